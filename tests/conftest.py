"""Shared fixtures. Factories that build a test's world in a line live beside the tests that use them."""

from __future__ import annotations
