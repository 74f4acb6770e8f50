"""The discrete-event simulator: a scenario's cluster in SimPy, driven by the REAL orchestrator core.

Truth (``truth``) → SimPy nodes, links and gateway (``resources``, ``gateway``, ``engine``) → noisy
measurements (``sensors``) → ``OrchestratorCore`` → plans applied after a modelled prepare/commit.
``run`` summarises modes as ``edgesplit bench`` does; ``scale`` grows a scenario to 100+ nodes.
"""
