"""The scenario runner on real local clusters (slow): modes, timed events, node kill and return, cleanup,
and repeatability of the SLA hit-rate with the same seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from edgesplit.evaluation.runner import run_scenario
from edgesplit.evaluation.scenario import Scenario, parse_scenario
from edgesplit.evaluation.workload import build_schedule

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SMART_CITY = Path(__file__).parents[2] / "scenarios" / "mec-smart-city.yaml"


def short_scenario(duration_s: float, events: list[dict[str, Any]], seed: int = 3) -> Scenario:
    """mec-smart-city's cluster and timing, a short low-rate load and the given events."""
    data = yaml.safe_load(SMART_CITY.read_text())
    data["name"] = "short-smart-city"
    data["workload"] = {
        "rate_rps": 1.0,
        "duration_s": duration_s,
        "prompt_tokens": 8,
        "output_tokens": 4,
        "privacy_high_fraction": 0.5,
        "seed": seed,
    }
    data["events"] = events
    return parse_scenario(yaml.safe_dump(data))


def children_of_this_process() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def test_static_keeps_its_plan_the_oracle_follows_the_truth_and_a_killed_node_comes_back(
    tmp_path: Path,
) -> None:
    """The device–mec1 link collapses at 3 s (static's t=0 plan uses it); mec2 is killed at 4 s and
    returns at 8 s. Static never changes; the oracle re-plans right after the collapse; the kill and
    the return really happen (the event log says so only once they did); nothing is left running."""
    events = [
        {"at_s": 3, "kind": "link", "a": "device", "b": "mec1", "bandwidth_mbps": 5, "rtt_ms": 300},
        {"at_s": 4, "kind": "node_kill", "node": "mec2"},
        {"at_s": 8, "kind": "node_return", "node": "mec2"},
    ]
    scenario = short_scenario(20, events)
    before = children_of_this_process()
    results, timelines = run_scenario(scenario, ["static", "oracle"], tmp_path)
    assert children_of_this_process() <= before  # every node, gateway, orchestrator stopped by PID

    sent = len(build_schedule(scenario))
    for mode in ("static", "oracle"):
        result = results[mode]
        assert result.requests == sent == len(timelines[mode].records)
        assert result.privacy_violations == 0
        assert 0.0 < result.utilization_mean <= 1.0
        labels = [label for _, label in timelines[mode].events]
        assert labels == ["link device~mec1: 5 Mbit/s, 300 ms RTT", "mec2 killed", "mec2 back"], labels
        at = [t for t, _ in timelines[mode].events]
        assert 2.9 <= at[0] < 4.5 and at[2] >= 8.0

    assert results["static"].reconfigurations == 0
    assert timelines["static"].reconfigurations == []
    # The oracle leaves the collapsed link right after it happened (it reads the truth, no triggers).
    moves = [t for t, _ in timelines["oracle"].reconfigurations]
    assert moves and 3.0 <= moves[0] < 20.0, timelines["oracle"].reconfigurations
    assert results["oracle"].reconfigurations == len(moves)
    # The static plan ran on mec1 alone (the t=0 optimum) for every request; the oracle did not.
    static_nodes = {
        n
        for r in timelines["static"].records
        if r.nodes_by_block
        for ns in r.nodes_by_block.values()
        for n in ns
    }
    assert static_nodes == {"mec1"}
    assert any(len(r.epochs) > 1 or r.epochs[-1] > 1 for r in timelines["oracle"].records if r.epochs)


def test_two_runs_with_the_same_seed_give_close_sla_hit_rates(tmp_path: Path) -> None:
    """Repeatability: the same scenario and seed twice (static), SLA hit-rates within 0.03."""
    scenario = short_scenario(25, [{"at_s": 10, "kind": "node_load", "node": "mec1", "load": 0.8}], seed=5)
    first, _ = run_scenario(scenario, ["static"], tmp_path / "a")
    second, _ = run_scenario(scenario, ["static"], tmp_path / "b")
    a, b = first["static"].sla_hit_rate, second["static"].sla_hit_rate
    assert first["static"].requests == second["static"].requests > 10
    assert abs(a - b) <= 0.03, (a, b)
