"""What a move costs given who holds which shard, and when its gain pays (hand-computed figures)."""

from __future__ import annotations

import pytest

from edgesplit.orchestrator.move_cost import MoveCost, MoveSettings, move_cost, net_benefit
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import EnvironmentState, LinkProfile, NodeProfile
from edgesplit.orchestrator.split_revision import plan_utilization

MB = 1_000_000
BLOCKS = [BlockCost(f"b{i}", 0.010, 100 * MB, 8, prefill_s_per_token=0.001) for i in range(4)]


def _node(node_id: str, loaded: set[int], cached: set[int], fetch_bps: float | None) -> NodeProfile:
    return NodeProfile(
        node_id, 2.0, 0.0, 0.1, 0, 0, 0, 0, 1, 0.0, frozenset(loaded), frozenset(cached), fetch_bps
    )


def _env(sessions: int = 0, context: float = 0.0) -> EnvironmentState:
    nodes = {
        "a": _node("a", {0, 1, 2, 3}, set(), None),
        "b": _node("b", set(), {2}, 80e6),  # block 2 on disk (standby); fetched at 80 Mbit/s before
        "c": _node("c", set(), set(), None),  # never fetched: its measured link bandwidth is used
    }
    links = {("a", "c"): LinkProfile("a", "c", 0.001, 40e6, 0.0)}
    return EnvironmentState(0.0, nodes, links, None, 10.0, sessions, context)


def test_standby_shards_load_from_disk_and_missing_ones_download_in_parallel() -> None:
    settings = MoveSettings(disk_read_bytes_per_s=200 * MB)
    cost = move_cost(_env(), BLOCKS, ("a",) * 4, ("a", "c", "b", "b"), settings, {})
    # b: block 2 from disk (100 MB / 200 MB/s = 0.5 s) + block 3 fetched (800 Mbit / 80 Mbit/s = 10 s)
    # c: block 1 fetched over its 40 Mbit/s link (800 Mbit / 40 Mbit/s = 20 s); nodes work in parallel.
    assert cost.download_bytes == 200 * MB and cost.load_bytes == 100 * MB
    assert cost.move_s == pytest.approx(20.0)


def test_an_unchanged_plan_costs_nothing_and_re_prefill_scales_with_sessions_and_context() -> None:
    assert move_cost(_env(4, 512), BLOCKS, ("a",) * 4, ("a",) * 4, MoveSettings(), {}) == MoveCost(
        0, 0, 0.0, 0.0
    )
    settings = MoveSettings(cutover_stall_s=0.0)
    cost = move_cost(_env(4, 512), BLOCKS, ("a",) * 4, ("a", "a", "b", "b"), settings, {"a": 2.0, "b": 2.0})
    # 4 blocks x 1 ms/token at speed 2 = 2 ms/token; 512 tokens; 4 sessions.
    assert cost.reprefill_s == pytest.approx(4 * 512 * 0.002)


def test_gain_counts_only_after_the_move_and_a_move_longer_than_the_horizon_never_pays() -> None:
    settings = MoveSettings(horizon_s=100.0)
    quick = net_benefit(0.050, 0.040, 20.0, MoveCost(0, 0, 10.0, 3.0), settings)
    assert quick.gain_s == pytest.approx(0.010 * 20.0 * 90.0) and quick.cost_s == 3.0 and quick.pays
    slow = net_benefit(0.050, 0.040, 20.0, MoveCost(0, 0, 150.0, 3.0), settings)
    assert slow.gain_s == 0.0 and not slow.pays
    idle = net_benefit(0.050, 0.040, 0.0, MoveCost(0, 0, 1.0, 0.5), settings)
    assert not idle.pays  # no traffic, nothing to gain


def test_plan_utilization_counts_only_the_nodes_the_plan_uses() -> None:
    problem = {
        "blocks": [{"work_ms": 10.0}, {"work_ms": 30.0}],
        "nodes": [{"id": "a", "speed": 2.0, "util": 0.1}, {"id": "idle", "speed": 1.0, "util": 0.95}],
        "token_rate": 20.0,
    }
    # a runs 40 ms of reference work per token at speed 2 = 20 ms; 20 tokens/s -> 0.4 busy, + 0.1 background.
    assert plan_utilization(problem, ("a", "a")) == pytest.approx(0.5)
