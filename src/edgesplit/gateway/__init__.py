"""OpenAI-compatible HTTP entry point: tokenises, drives the decode loop, streams, replays on failure."""
