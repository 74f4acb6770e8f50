"""Standby shards in the move decision: what nodes report holding on disk reaches the move cost, and a
move that needs a download is accepted only when its gain pays for it (hand-computed figures)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgesplit.orchestrator.candidates import ACCEPTED, Guard
from edgesplit.orchestrator.events import CandidateKind, CandidateRecord
from edgesplit.orchestrator.move_cost import MoveSettings, holdings, move_cost
from edgesplit.orchestrator.observations import to_node_telemetry
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import CapacityProfiler, EnvironmentState
from edgesplit.wire.messages import SegmentStats, TelemetrySnapshot

MB = 1_000_000
BLOCKS = [BlockCost(f"b{i}", 0.010, 100 * MB, 8, prefill_s_per_token=0.001) for i in range(4)]
CURRENT = ("a", "a", "a", "a")
PROBLEM = {"nodes": [{"id": n, "speed": 1.0} for n in ("a", "b", "c")]}


def reported_env(c_fetch_bps: float) -> EnvironmentState:
    """E(t) built the way the orchestrator builds it: node reports -> profiler -> snapshot.

    a serves 0:4; b serves nothing but keeps blocks 2 and 3 on disk (standby); c holds nothing and
    measured ``c_fetch_bps`` on its last shard download.
    """
    profiler = CapacityProfiler({b: 0.010 for b in range(4)})
    reports = [
        TelemetrySnapshot(
            "a", 0.1, 0, -1.0, segments=(SegmentStats(0, 4, 0.0, 0.0, 0, 0),), seq=1, uptime_s=1.0
        ),
        TelemetrySnapshot("b", 0.1, 0, -1.0, seq=1, uptime_s=1.0, cached_blocks=frozenset({2, 3})),
        TelemetrySnapshot("c", 0.1, 0, -1.0, seq=1, uptime_s=1.0, shard_fetch_bps=c_fetch_bps),
    ]
    for snap in reports:
        profiler.add_node_report(to_node_telemetry(snap, None), 0.0)
    env = profiler.snapshot(0.0)
    return EnvironmentState(env.at_s, env.nodes, env.links, 0.050, 20.0, 0, 0.0)


def candidate(assignment: tuple[str, ...], latency_s: float) -> CandidateRecord:
    return CandidateRecord(CandidateKind.MIGRATE, assignment, True, latency_s, 0.5, True)


def test_reported_standby_shards_reach_the_move_cost() -> None:
    env = reported_env(8e6)
    assert holdings(env, CURRENT, "b") == (frozenset(), frozenset({2, 3}))
    settings = MoveSettings(disk_read_bytes_per_s=200 * MB)
    to_b = move_cost(env, BLOCKS, CURRENT, ("a", "a", "b", "b"), settings, {})
    assert (to_b.download_bytes, to_b.load_bytes) == (0, 200 * MB)
    assert to_b.move_s == pytest.approx(1.0)  # 200 MB from disk at 200 MB/s
    to_c = move_cost(env, BLOCKS, CURRENT, ("a", "a", "c", "c"), settings, {})
    assert (to_c.download_bytes, to_c.load_bytes) == (200 * MB, 0)
    assert to_c.move_s == pytest.approx(200.0)  # 1600 Mbit at c's measured 8 Mbit/s


@pytest.mark.parametrize(
    ("c_fetch_bps", "c_latency_s", "c_accepted"),
    [
        (8e6, 0.040, False),  # download (200 s) longer than the 120 s horizon: never pays
        (800e6, 0.040, True),  # 2 s download, 10 ms/token better for 118 s: pays
        (80e6, 0.0499, False),  # 20 s download for 0.1 ms/token: gain 0.2 s < re-prefill cost
    ],
)
def test_a_move_needing_a_download_is_chosen_only_when_its_gain_pays(
    c_fetch_bps: float, c_latency_s: float, c_accepted: bool
) -> None:
    env = replace(reported_env(c_fetch_bps), live_sessions=2, mean_context_tokens=100.0)  # re-prefill: 1 s
    settings = MoveSettings(horizon_s=120.0, disk_read_bytes_per_s=200 * MB, cutover_stall_s=0.1)
    guard = Guard(BLOCKS, CURRENT, settings, urgent=False, min_gain=0.0)
    keep = candidate(CURRENT, 0.050)
    standby = guard.judge(candidate(("a", "a", "b", "b"), 0.040), keep, env, PROBLEM)
    assert standby.note == ACCEPTED and standby.move_bytes == 200 * MB
    fetched = guard.judge(candidate(("a", "a", "c", "c"), c_latency_s), keep, env, PROBLEM)
    assert (fetched.note == ACCEPTED) is c_accepted
    if not c_accepted:
        assert fetched.note.startswith("move does not pay")
        assert fetched.gain_s is not None and fetched.cost_s is not None and fetched.gain_s <= fetched.cost_s
