"""Known cases: the device/MEC/cloud example, a bandwidth collapse, migration-only, min-change, sources."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from planner_oracle import brute_force, close, make_problem, oracle_cost

from edgesplit.errors import InfeasibleError, InvalidProblemError
from edgesplit.orchestrator.planner import Problem, evaluate, load_problem, parse_problem, solve

EXAMPLE = Path(__file__).parents[2] / "examples" / "problems" / "device_mec_cloud.json"


def _example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


@pytest.mark.parametrize("solver", ["dp", "exact", "auto"])
def test_device_mec_cloud_keeps_embed_and_head_on_device_middle_on_mec(solver: str) -> None:
    plan = solve(load_problem(EXAMPLE), solver)
    assert plan.assignment[0] == "device" and plan.assignment[-1] == "device"
    assert set(plan.assignment[2:-1]) == {"mec1"}
    assert plan.optimal
    assert close(plan.cost.phi, brute_force(_example())[0])  # type: ignore[index]


def test_bandwidth_collapse_changes_the_latency_optimal_plan() -> None:
    healthy = solve(load_problem(EXAMPLE), "exact")
    d = _example()
    for link in d["links"]:
        if {link["a"], link["b"]} == {"device", "mec1"}:
            link["bandwidth_mbps"], link["rtt_ms"] = 0.5, 80.0
    collapsed = solve(parse_problem(d), "exact")
    assert collapsed.assignment != healthy.assignment
    # The old plan is now much worse than the new one, by the independent oracle too.
    assert oracle_cost(d, list(healthy.assignment))["phi"] > collapsed.cost.phi * 1.5
    assert close(collapsed.cost.phi, brute_force(d)[0])  # type: ignore[index]


def test_migration_only_keeps_every_boundary_even_when_neighbours_share_a_node() -> None:
    d = _example()
    d["nodes"].append({"id": "mec2", "speed": 4.0, "mem_bytes": 8_000_000_000, "util": 0.2, "trusted": False})
    d["links"].append({"a": "device", "b": "mec2", "bandwidth_mbps": 400, "rtt_ms": 2.0})
    cuts = [2, 4, 7]
    plan = solve(parse_problem(d), "exact", fixed_boundaries=cuts)
    assert [(s.start, s.end) for s in plan.segments] == [(0, 2), (2, 4), (4, 7), (7, 8)]
    assert plan.optimal


def test_min_change_prefers_the_plan_whose_shards_are_already_held() -> None:
    d = _example()
    d["nodes"].append({"id": "mec2", "speed": 4.0, "mem_bytes": 8_000_000_000, "util": 0.2, "trusted": False})
    d["links"].append({"a": "device", "b": "mec2", "bandwidth_mbps": 400, "rtt_ms": 2.0})
    problem = parse_problem(d)
    best = solve(problem, "exact")
    # mec2 is a twin of mec1; holding the middle there already, staying costs nothing to move.
    current = ["device", "device", *["mec2"] * 5, "device"]
    plan = solve(problem, "exact", current=current, min_change_epsilon=0.0)
    assert list(plan.assignment) == current
    assert plan.moved_bytes == 0
    assert close(plan.cost.phi, best.cost.phi)
    held = solve(
        problem, "exact", current=list(best.assignment), held={"mec2": range(2, 7)}, min_change_epsilon=0.0
    )
    assert held.moved_bytes == 0


def test_throughput_objective_spreads_load_the_latency_objective_keeps_together() -> None:
    d = make_problem(n_nodes=3, n_blocks=6, privacy="none")
    d["blocks"] = [{**b, "privacy": False, "work_ms": 8.0} for b in d["blocks"]]
    latency = solve(parse_problem(d), "exact", objective="latency")
    throughput = solve(parse_problem(d), "exact", objective="throughput")
    assert throughput.cost.bottleneck_ms < latency.cost.bottleneck_ms
    assert latency.cost.latency_ms <= throughput.cost.latency_ms
    assert close(throughput.cost.bottleneck_ms, brute_force(d, "throughput")[0])  # type: ignore[index]


def test_two_sources_share_one_copy_of_the_weights_on_a_node() -> None:
    d = make_problem(n_nodes=3, n_blocks=3)
    d.pop("source")
    d["nodes"].append({"id": "phone", "speed": 0.5, "mem_bytes": 10_000, "util": 0.1, "trusted": True})
    d["links"] += [{"a": "phone", "b": n, "bandwidth_mbps": 100.0, "rtt_ms": 2.0} for n in ("mec1", "mec2")]
    d["sources"] = [{"node": "device", "token_rate": 10.0}, {"node": "phone", "token_rate": 30.0}]
    # mec1 fits the middle block once, not twice: both sources must share that copy.
    for node in d["nodes"]:
        if node["id"] == "mec1":
            node["mem_bytes"], node["speed"] = 100, 8.0
    plan = solve(parse_problem(d), "exact")
    assert [sp.assignment[1] for sp in plan.sources] == ["mec1", "mec1"]
    assert close(plan.cost.phi, brute_force(d)[0])  # type: ignore[index]
    assert plan.to_json()["sources"][1]["source"] == "phone"


def test_infeasible_problem_raises_and_names_the_shortfall() -> None:
    d = make_problem(n_nodes=2, n_blocks=3)
    for node in d["nodes"]:
        node["mem_bytes"] = 150  # two blocks of 100 bytes cannot share a node
    d["nodes"][1]["trusted"] = True
    d["blocks"][1]["param_bytes"] = 200
    with pytest.raises(InfeasibleError, match=r"memory|bytes"):
        solve(parse_problem(d), "exact")
    for solver in ("dp", "greedy", "auto"):
        with pytest.raises(InfeasibleError):
            solve(parse_problem(d), solver)


def test_evaluate_flags_a_privacy_violation_and_a_missing_link() -> None:
    d = make_problem(n_nodes=2, n_blocks=2)
    cost = evaluate(parse_problem(d), ["mec1", "device"])
    assert not cost.feasible and any("privacy" in v for v in cost.violations)
    d["links"] = []
    assert not evaluate(parse_problem(d), ["device", "mec1"]).feasible


def test_problem_from_python_objects_validates_like_the_file() -> None:
    problem = load_problem(EXAMPLE)
    nodes = (*problem.nodes, problem.nodes[0])
    with pytest.raises(InvalidProblemError, match=r"nodes\[3\]\.id: duplicate node id 'device'"):
        Problem(problem.blocks, nodes, problem.links, problem.sources)


def test_optimal_promise_holds_on_the_r1_profile_without_restrictions() -> None:
    problem = load_problem(Path(__file__).parent / "fixtures" / "r1_edgeshard_llama2_7b.json")
    plan = solve(problem, "exact")
    assert plan.optimal and plan.lower_bound is not None
    assert plan.cost.phi <= plan.lower_bound * (1 + 1e-6)
    # Any single-block move from the optimum is no better (a cheap, independent sanity check).
    base = list(plan.assignment)
    for b in range(len(base)):
        for node in problem.node_ids:
            moved = copy.copy(base)
            moved[b] = node
            cost = evaluate(problem, moved)
            if cost.feasible:
                assert cost.phi >= plan.cost.phi - 1e-9
