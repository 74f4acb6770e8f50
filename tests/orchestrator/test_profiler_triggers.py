"""Capacity profiling maths and ShouldReconfigure's triggers with hysteresis (pure, no clock)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.orchestrator.events import TriggerKind
from edgesplit.orchestrator.problem_builder import (
    BlockCost,
    ClusterFacts,
    LinkPrior,
    NodeFacts,
    build_problem,
)
from edgesplit.orchestrator.profiler import (
    CapacityProfiler,
    EnvironmentState,
    LatencyObservation,
    LinkObservation,
    LinkProfile,
    NodeProfile,
    NodeTelemetry,
    RobustEwma,
    WorkloadObservation,
)
from edgesplit.orchestrator.triggers import (
    Hysteresis,
    PlanView,
    Thresholds,
    TriggerState,
    active_links,
    should_reconfigure,
)

REF = {0: 0.001, 1: 0.020, 2: 0.020, 3: 0.005}


def test_speed_and_background_load_are_recovered_from_measured_block_times() -> None:
    prof = CapacityProfiler(REF)
    speed, background, own = 4.0, 0.5, 0.2
    times = {b: w / (speed * (1 - background)) for b, w in REF.items()}
    for seq in range(1, 4):
        prof.add_node_report(
            NodeTelemetry("mec1", seq, background + own, 1.0, own, block_decode_s=times), 0.0
        )
    node = prof.snapshot(0.0).nodes["mec1"]
    assert node.speed == pytest.approx(speed)
    assert node.background_util == pytest.approx(background)
    assert node.utilization == pytest.approx(background + own)


def test_stale_or_duplicate_reports_are_ignored() -> None:
    prof = CapacityProfiler(REF)
    assert prof.add_node_report(NodeTelemetry("n", 5, 0.1), 0.0)
    assert not prof.add_node_report(NodeTelemetry("n", 5, 0.9), 1.0)
    assert not prof.add_node_report(NodeTelemetry("n", 4, 0.9), 2.0)
    node = prof.snapshot(2.0).nodes["n"]
    assert node.utilization == pytest.approx(0.1) and node.last_report_s == 0.0


def test_link_bandwidth_from_observed_transfers_and_rtt_from_probes() -> None:
    prof = CapacityProfiler(REF)
    rtt, bw, nbytes = 0.010, 100e6, 1_000_000
    for _ in range(3):
        prof.add_link_observation(LinkObservation("b", "a", rtt, nbytes, rtt / 2 + nbytes * 8 / bw), 0.0)
    # Small transfers are latency-bound and must not be read as bandwidth.
    prof.add_link_observation(LinkObservation("a", "b", None, 2048, 0.02), 0.0)
    link = prof.snapshot(0.0).link("a", "b")
    assert link is not None
    assert link.rtt_s == pytest.approx(rtt)
    assert link.bandwidth_bps == pytest.approx(bw, rel=1e-6)


def test_single_outliers_do_not_move_the_latency_ewma_past_a_threshold() -> None:
    prof = CapacityProfiler(REF)
    for i in range(50):
        prof.add_latency(LatencyObservation(0.100 if i % 10 else 2.0))  # one sample in ten is 20x
    snap = prof.snapshot(0.0)
    assert snap.latency_s is not None and snap.latency_s < 0.110


def test_a_sustained_level_shift_is_believed_within_a_few_samples() -> None:
    ewma = RobustEwma(alpha=0.3, window=5)
    for _ in range(10):
        ewma.add(400e6)
    values = [ewma.add(5e6) for _ in range(4)]
    assert values[0] > 100e6  # one sample is not enough
    assert values[2] < 10e6  # a majority of the window is


def test_latency_samples_of_an_older_epoch_are_dropped_after_a_commit() -> None:
    prof = CapacityProfiler(REF)
    prof.add_latency(LatencyObservation(0.5, epoch=1))
    prof.on_epoch_committed(2)
    prof.add_latency(LatencyObservation(0.5, epoch=1))
    assert prof.snapshot(0.0).latency_s is None
    prof.add_latency(LatencyObservation(0.05, epoch=2))
    assert prof.snapshot(0.0).latency_s == pytest.approx(0.05)


@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=40))
def test_robust_ewma_stays_within_the_range_of_its_samples(samples: list[float]) -> None:
    ewma = RobustEwma(alpha=0.3, window=5)
    for s in samples:
        value = ewma.add(s)
        assert min(samples) - 1e-12 <= value <= max(samples) + 1e-12


# ---- triggers --------------------------------------------------------------------------------------


def _env(
    latency: float | None = 0.05, util: float = 0.3, bw: float = 400e6, dead_at: float | None = None
) -> EnvironmentState:
    def node(n: str) -> NodeProfile:
        last = 0.0 if dead_at is None or n != "mec1" else -100.0
        return NodeProfile(n, 1.0, 0.0, util if n == "mec1" else 0.1, 0, 0, 0, 0, 1, last,
                           frozenset(), frozenset(), None)  # fmt: skip

    nodes = {n: node(n) for n in ("device", "mec1", "mec2")}
    links = {
        ("device", "mec1"): LinkProfile("device", "mec1", 0.002, bw, 0.0),
        ("device", "mec2"): LinkProfile("device", "mec2", 0.002, 10e6, 0.0),  # unused by the plan
    }
    return EnvironmentState(0.0, nodes, links, latency, 20.0, 2, 100.0)


VIEW = PlanView(("device", "mec1", "mec1", "device"), "device", {"device": True}, frozenset({0, 3}))


def _run(values: list[EnvironmentState], **kw: object) -> list[set[TriggerKind]]:
    state = TriggerState()
    fired = []
    for env in values:
        d = should_reconfigure(env, Thresholds(), VIEW, state, **kw)  # type: ignore[arg-type]
        state = d.state
        fired.append({f.kind for f in d.firing})
    return fired


def test_active_links_follow_the_chain_from_and_back_to_the_source() -> None:
    assert active_links(("device", "mec1", "mec1", "mec2"), "device") == (
        ("device", "mec1"),
        ("mec1", "mec2"),
        ("mec2", "device"),
    )


def test_each_threshold_trigger_fires_after_persisting_and_reports_value_and_threshold() -> None:
    over = [_env(latency=0.2), _env(latency=0.2)]
    assert _run(over) == [set(), {TriggerKind.LATENCY}]
    assert _run([_env(util=0.95)] * 2)[-1] == {TriggerKind.UTILIZATION}
    assert _run([_env(bw=5e6)] * 2)[-1] == {TriggerKind.BANDWIDTH}
    d = should_reconfigure(
        _env(bw=5e6), Thresholds(), VIEW, TriggerState(), hysteresis=Hysteresis(persist_ticks=1)
    )
    (firing,) = d.firing
    assert (firing.value, firing.threshold, firing.subject) == (5e6, 50e6, "device~mec1")


def test_an_unused_slow_link_and_missing_latency_do_not_fire() -> None:
    # device~mec2 is at 10 Mbit/s but the plan does not use it; no latency measured yet.
    assert _run([_env(latency=None)] * 5) == [set()] * 5


def test_a_value_hovering_at_the_threshold_does_not_flap() -> None:
    rng = random.Random(1)
    series = [0.16, 0.16] + [0.150 + rng.uniform(-0.008, 0.008) for _ in range(60)]
    fired = _run([_env(latency=v) for v in series])
    rising_edges = sum(1 for a, b in zip([set(), *fired], fired, strict=False) if b - a)
    assert rising_edges == 1  # fires once and stays active; never toggles
    # It clears only once the value falls below the release level (10 % under L_max) ...
    tail = _run([_env(latency=0.16)] * 2 + [_env(latency=0.14)] * 3 + [_env(latency=0.13)])
    assert tail[-2] == {TriggerKind.LATENCY} and tail[-1] == set()


def test_alternating_single_spikes_never_fire() -> None:
    assert all(f == set() for f in _run([_env(latency=0.2 if i % 2 else 0.1) for i in range(20)]))


def test_privacy_fires_at_once_only_with_a_pending_request_and_an_exposed_block() -> None:
    exposed = PlanView(("mec1", "mec1", "mec1", "device"), "device", {"device": True}, frozenset({0, 3}))
    d = should_reconfigure(_env(), Thresholds(), exposed, TriggerState(), pending_privacy_high=2)
    assert [f.kind for f in d.firing] == [TriggerKind.PRIVACY] and d.urgent
    assert d.firing[0].value == 1.0
    assert not should_reconfigure(_env(), Thresholds(), exposed, TriggerState()).firing
    assert not should_reconfigure(_env(), Thresholds(), VIEW, TriggerState(), pending_privacy_high=2).firing


def test_node_loss_fires_at_once_for_nodes_of_the_plan_only() -> None:
    d = should_reconfigure(_env(), Thresholds(), VIEW, TriggerState(), dead_nodes=frozenset({"mec1"}))
    assert (
        [f.kind for f in d.firing] == [TriggerKind.NODE_LOSS] and d.urgent and d.firing[0].subject == "mec1"
    )
    assert not should_reconfigure(
        _env(), Thresholds(), VIEW, TriggerState(), dead_nodes=frozenset({"mec2"})
    ).firing


def test_thresholds_default_to_table_3_and_convert_cluster_units() -> None:
    assert Thresholds() == Thresholds(0.150, 0.85, 50e6, 30.0)
    assert Thresholds.from_cluster_units(200, 0.9, 100, 10) == Thresholds(0.2, 0.9, 100e6, 10.0)


# ---- the planner problem -----------------------------------------------------------------------------


def test_problem_is_built_from_measurements_with_declared_facts_and_priors() -> None:
    blocks = [BlockCost("embed", 0.001, 100, 8, privacy=True), BlockCost("l0", 0.02, 1000, 8)]
    facts = ClusterFacts(
        (
            NodeFacts("device", True, 10_000, source=True),
            NodeFacts("mec1", False, 5_000),
            NodeFacts("gone", False, 1),
        ),
        links=(LinkPrior("device", "mec1", 100e6, 0.005), LinkPrior("device", "gone", 1e6, 0.1)),
    )
    prof = CapacityProfiler({0: 0.001, 1: 0.02})
    prof.add_node_report(
        NodeTelemetry(
            "mec1", 1, 0.5, 1.0, 0.0, 0, 3_000, {1: 0.02 / (4 * 0.5)}, loaded_blocks=frozenset({1})
        ),
        0,
    )
    prof.add_link_observation(LinkObservation("mec1", "device", 0.002), 0.0)  # RTT only: bandwidth from prior
    prof.set_workload(WorkloadObservation(30.0, 3, 400.0))
    problem = build_problem(prof.snapshot(0.0), blocks, facts, privacy="none", exclude=frozenset({"gone"}))
    nodes = {n["id"]: n for n in problem["nodes"]}
    assert set(nodes) == {"device", "mec1"}
    assert nodes["mec1"]["speed"] == pytest.approx(4.0) and nodes["mec1"]["util"] == pytest.approx(0.5)
    assert nodes["mec1"]["mem_bytes"] == 3_000 + 1000  # free now + its own loaded block, under the cap
    assert nodes["device"]["speed"] == 1.0  # no report yet: the neutral prior
    (link,) = problem["links"]
    assert link == {"a": "device", "b": "mec1", "bandwidth_mbps": 100.0, "rtt_ms": pytest.approx(2.0)}
    assert (problem["token_rate"], problem["sessions"], problem["context_tokens"]) == (30.0, 3, 400)
    assert problem["blocks"][1]["work_ms"] == pytest.approx(20.0)


def test_orchestrator_config_defaults_are_the_papers_and_bad_keys_are_refused() -> None:
    from pydantic import ValidationError

    from edgesplit.orchestrator.config import OrchestratorConfig

    settings = OrchestratorConfig().controller_settings()
    assert settings.thresholds == Thresholds(0.150, 0.85, 50e6, 30.0)
    custom = OrchestratorConfig.model_validate({"thresholds": {"latency_ms": 200, "cooldown_s": 5}})
    assert custom.controller_settings().thresholds == Thresholds(0.2, 0.85, 50e6, 5.0)
    with pytest.raises(ValidationError, match="latncy_ms"):
        OrchestratorConfig.model_validate({"thresholds": {"latncy_ms": 200}})
    with pytest.raises(ValidationError):
        OrchestratorConfig.model_validate({"thresholds": {"utilization": 1.5}})
