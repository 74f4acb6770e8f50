"""Discrete-event simulator running the real planner and controller at scale."""
