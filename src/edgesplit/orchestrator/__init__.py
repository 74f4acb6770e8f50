"""The adaptive orchestrator: capacity profiling, Algorithm 1, split revision, reconfiguration broadcast."""
