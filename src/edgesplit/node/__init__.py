"""The node agent: hosts segments, runs steps off the event loop, forwards activations, reports telemetry."""
