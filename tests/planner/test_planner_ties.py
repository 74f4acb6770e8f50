"""Deterministic answers: equal-cost plans come back the same every time, and solvers that agree agree."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_oracle import make_problem

from edgesplit.errors import InfeasibleError
from edgesplit.orchestrator.planner import parse_problem, solve


def twin_mec_problem(memory: int) -> dict[str, Any]:
    """device + two identical MEC nodes: every plan using mec1 has an equal-cost twin using mec2."""
    d = make_problem(n_nodes=3, n_blocks=6)
    for node in d["nodes"][1:]:
        node["mem_bytes"] = memory
    return d


@pytest.mark.parametrize("memory", [10_000, 300])  # roomy: one MEC takes all; tight: both are needed
@pytest.mark.parametrize("solver", ["dp", "exact", "auto", "greedy"])
def test_same_input_same_plan(solver: str, memory: int) -> None:
    d = twin_mec_problem(memory)
    plans = [solve(parse_problem(copy.deepcopy(d)), solver) for _ in range(3)]
    assert len({p.assignment for p in plans}) == 1


@pytest.mark.parametrize("memory", [10_000, 300])
def test_exact_solvers_break_ties_the_same_way(memory: int) -> None:
    d = twin_mec_problem(memory)
    plans = {s: solve(parse_problem(d), s) for s in ("dp", "exact", "auto")}
    assert all(p.optimal for p in plans.values())
    assert len({p.assignment for p in plans.values()}) == 1
    assignment = plans["exact"].assignment
    # privacy blocks (first, last) stay on the trusted device; the lowest-index twin wins the tie
    assert assignment[0] == assignment[-1] == "device"
    used = set(assignment[1:-1])
    if memory == 10_000:
        assert used == {"mec1"}
    else:
        assert "mec1" in used and len(used - {"device"}) >= 1


def test_a_tie_follows_node_order_not_chance() -> None:
    d = twin_mec_problem(10_000)
    first = solve(parse_problem(d), "exact").assignment
    d["nodes"][1], d["nodes"][2] = d["nodes"][2], d["nodes"][1]
    swapped = solve(parse_problem(d), "exact").assignment
    # the twins are identical, so listing mec2 first makes mec2 the lowest index: it takes the blocks
    assert set(first[1:-1]) == {"mec1"} and set(swapped[1:-1]) == {"mec2"}


@st.composite
def tie_rich_problems(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """Problems only CP-SAT answers (throughput objective, or U with a token rate) whose blocks, nodes and
    links take values from two-element sets, so many different plans share the optimal objective."""
    n_blocks, n_nodes = draw(st.integers(6, 10)), draw(st.integers(3, 5))
    ids = [f"n{i}" for i in range(n_nodes)]
    blocks = [
        {
            "name": f"b{i}",
            "work_ms": draw(st.sampled_from([1.0, 2.0])),
            "param_bytes": draw(st.sampled_from([10, 20])),
            "kv_bytes_per_token": 0,
            "out_bytes": draw(st.sampled_from([0, 1000])),
            "privacy": False,
        }
        for i in range(n_blocks)
    ]
    nodes = [
        {
            "id": nid,
            "speed": draw(st.sampled_from([1.0, 2.0])),
            "mem_bytes": draw(st.sampled_from([40, 60, 10_000])),
            "util": draw(st.sampled_from([0.0, 0.5])),
            "trusted": True,
        }
        for nid in ids
    ]
    links = [
        {
            "a": a,
            "b": b,
            "bandwidth_mbps": draw(st.sampled_from([100.0, 1000.0])),
            "rtt_ms": draw(st.sampled_from([1.0, 2.0])),
        }
        for a, b in itertools.combinations(ids, 2)
    ]
    d = {
        "blocks": blocks,
        "nodes": nodes,
        "links": links,
        "source": "n0",
        "token_rate": 20.0,
        "weights": {"alpha": 1.0, "beta": 10.0, "gamma": 0.0},
    }
    return d, draw(st.sampled_from(["latency", "throughput"]))


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(tie_rich_problems())
def test_repeated_cpsat_solves_return_the_identical_plan(case: tuple[dict[str, Any], str]) -> None:
    """With 2 racing CP-SAT workers, most of these examples came back as two or three different plans
    over three solves; one seeded worker must give one plan."""
    d, objective = case
    try:
        first = solve(parse_problem(d), "exact", objective=objective)  # type: ignore[arg-type]
    except InfeasibleError:
        return
    for _ in range(2):
        again = solve(parse_problem(copy.deepcopy(d)), "exact", objective=objective)  # type: ignore[arg-type]
        assert again.assignment == first.assignment, (objective, first.to_json(), again.to_json())
        assert again.optimal == first.optimal
