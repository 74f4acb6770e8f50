"""The exact run search (memory binding, revisits allowed) against brute force, and its proof claims."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from planner_oracle import brute_force, close, oracle_cost, problems

from edgesplit.errors import InfeasibleError
from edgesplit.orchestrator.planner import parse_problem, solve
from edgesplit.orchestrator.planner.instance import build_instance
from edgesplit.orchestrator.planner.runs import run_search


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_blocks=6, max_nodes=4, tight=True))
def test_run_search_is_exact_when_memory_binds(d: dict[str, Any]) -> None:
    best = brute_force(d)
    problem = parse_problem(d)
    inst = build_instance(problem)
    found = run_search(inst, None, time.perf_counter() + 30)
    assert found.proven
    if best is None:
        assert found.path is None
        try:
            solve(problem, "exact")
        except InfeasibleError:
            return
        raise AssertionError("exact returned a plan for an infeasible problem")
    assert found.path is not None
    plan = solve(problem, "exact")
    truth = oracle_cost(d, plan.assignment)
    assert truth["feasible"] and plan.optimal
    assert close(truth["phi"], best[0]), (truth, best)
    assert close(found.value, best[0]), (found.value, best)


def test_a_revisit_that_fits_is_found() -> None:
    """The fast node holds 2 of 3 blocks: the best plan leaves it for the work-free middle one and returns."""
    block = {"param_bytes": 100, "kv_bytes_per_token": 0, "out_bytes": 10, "privacy": False}
    d = {
        "blocks": [{"name": f"b{i}", "work_ms": w, **block} for i, w in enumerate([10.0, 0.0, 10.0])],
        "nodes": [
            {"id": "src", "speed": 0.01, "mem_bytes": 100, "util": 0.0, "trusted": True},
            {"id": "fast", "speed": 10.0, "mem_bytes": 200, "util": 0.0, "trusted": True},
            {"id": "slow", "speed": 1.0, "mem_bytes": 100, "util": 0.0, "trusted": True},
        ],
        "links": [
            {"a": "src", "b": "fast", "bandwidth_mbps": 1000.0, "rtt_ms": 2.0},
            {"a": "fast", "b": "slow", "bandwidth_mbps": 1000.0, "rtt_ms": 1.0},
        ],
        "source": "src",
    }
    plan = solve(parse_problem(d), "exact")
    assert plan.assignment == ("fast", "slow", "fast")
    assert plan.optimal
    # in 1 ms + 4 B, b0 1 ms, 0.5 ms + 10 B, b1 0 ms, 0.5 ms + 10 B, b2 1 ms, back 1 ms + 10 B (1 B = 8e-6 ms)
    expected = 1.0 + 4 * 8e-6 + 1.0 + 0.5 + 10 * 8e-6 + 0.0 + 0.5 + 10 * 8e-6 + 1.0 + 1.0 + 10 * 8e-6
    assert close(plan.cost.latency_ms, expected)
