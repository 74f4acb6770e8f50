"""The adaptive orchestrator: capacity profiling, Algorithm 1, split revision, reconfiguration broadcast.

Pure core (no sockets, threads or clocks; time is passed in as ``now``):

* ``profiler``        measurements → E(t): ``NodeTelemetry``, ``LinkObservation``, ``LatencyObservation``,
                      ``WorkloadObservation`` → ``CapacityProfiler`` → ``EnvironmentState``
* ``problem_builder`` E(t) + ``BlockCost``s + ``ClusterFacts`` → the §4.2 planner problem (dict)
* ``triggers``        ``Thresholds`` (Table 3), ``should_reconfigure`` with hysteresis
* ``move_cost``       bytes to fetch/load given each node's loaded + standby shards; net benefit
* ``candidates``      the split-revision interface (``PlanFn``, ``Prediction``) and the change guards
* ``controller``      ``AdaptiveController``: Algorithm 1 as ``tick(now, MonitoringInputs)``
* ``split_revision``  ``SplitRevision``: the planner package as the controller's plan/evaluate callables
* ``plans`` / ``signing`` / ``plan_gate``  the signed, epoch-fenced plan of §4.6 and the node-side gate
* ``store`` / ``events``  SQLite persistence and the decision record (``/v1/events`` JSON)
* ``core``            ``OrchestratorCore``: controller + signing + store, in the order RB needs
* ``config``          ``OrchestratorConfig`` (the cluster file's ``orchestrator:`` section + flags) → the
                      settings above

The ``edgesplit orchestrator`` process is a thin shell around ``OrchestratorCore`` — ``service``
(``OrchestratorService``: the asyncio loop, gRPC and HTTP imported lazily), ``observations`` (what
nodes and gateway report → ``MonitoringInputs`` parts, pure) and ``cluster_facts``
(declared facts and reference block costs from the cluster file, never its emulation section):

    core = OrchestratorCore(AdaptiveController(blocks, facts, sr.plan, sr.evaluate, store, settings),
                            store, load_or_create_private_key(key_path))
    step = core.start(now, reported_epochs, inputs)          # adopt (no redeploy) or prepare d_0
    every Δt: step = core.tick(now, inputs)                  # inputs = what arrived since last tick
    if step.message: send prepare to the plan's nodes; all ready → send core.commit_message(epoch)
        → core.committed(epoch, now, prepare_s, commit_s) → send its release message
        any failure/timeout → core.aborted(epoch, now, failed_nodes, prepare_s) → send its abort
"""
