"""The planner's entry point: pick a solver, search, re-evaluate with the real cost, package a Plan.

Pure (no I/O); the only clock read is for ``solve_ms`` and the solver time limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from edgesplit.orchestrator.planner.cost import Cost, Tables, build_tables, evaluate
from edgesplit.orchestrator.planner.cpsat import SearchOptions
from edgesplit.orchestrator.planner.dp import fits
from edgesplit.orchestrator.planner.exact import (
    SearchResult,
    chain_paths,
    dp_exact_applies,
    exact_search,
    u_floor,
)
from edgesplit.orchestrator.planner.greedy import greedy_paths
from edgesplit.orchestrator.planner.instance import Instance, build_instance
from edgesplit.orchestrator.planner.local import improve
from edgesplit.orchestrator.planner.plan import Objective, Plan, SourcePlan, segments_of
from edgesplit.orchestrator.planner.problem import Problem
from edgesplit.orchestrator.planner.prune import prune_nodes
from edgesplit.orchestrator.planner.symmetry import identical_groups

SolverName = Literal["dp", "exact", "greedy", "auto"]
SOLVERS: tuple[str, ...] = ("dp", "exact", "greedy", "auto")
PROOF_TOLERANCE = 1e-6
AUTO_EXACT_MAX_NODES = 256
"""``auto`` searches all nodes exactly up to this size; above it, it prunes to candidates first."""
AUTO_PER_ROLE = 8
AUTO_PRUNED_TIME_LIMIT_S = 0.5
"""``auto`` on a large cluster answers within about this budget (plus the pruning pass)."""


def solve(
    problem: Problem,
    solver: SolverName | str = "auto",
    *,
    objective: Objective = "latency",
    fixed_boundaries: Sequence[int] | None = None,
    current: Sequence[str] | None = None,
    held: Mapping[str, Iterable[int]] | None = None,
    min_change_epsilon: float | None = None,
    restrictions: SearchOptions | None = None,
    time_limit_s: float = 10.0,
) -> Plan:
    """Best plan for ``problem``; raises InfeasibleError when no plan exists (see the package docstring)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    started = time.perf_counter()
    base = restrictions or SearchOptions()
    opts = SearchOptions(
        objective=objective,
        one_segment_per_node=base.one_segment_per_node,
        source_revisit=base.source_revisit,
        first_on_source=base.first_on_source,
        time_limit_s=time_limit_s,
        workers=base.workers,
    )
    tables = build_tables(problem)
    notes: list[str] = []
    pruned: dict[str, int] | None = None
    search_problem, search_tables = problem, tables
    walked: tuple[tuple[int, ...], ...] = ()
    if solver == "auto" and len(problem.nodes) > AUTO_EXACT_MAX_NODES:
        full = build_instance(problem, fixed_boundaries, tables)
        chains = chain_paths(full)
        paths = tuple(p for _, p in chains)
        if min_change_epsilon is None and dp_exact_applies(full, opts) and fits(full, list(paths)):
            lower = sum(v for v, _ in chains) + u_floor(full)
            result = SearchResult(paths, True, lower, ("shortest path over all nodes fits memory",))
            return _package(
                problem, tables, full, result, "auto", objective, started, fixed_boundaries, None, None
            )
        walked = greedy_paths(full) or ()
        if walked and full.n_sources == 1 and dp_exact_applies(full, opts):
            walked = (improve(full, walked[0]),)
        on_path = [tables.node_ids[n] for path in (*paths, *walked) for n in path]
        keep = list(current or ()) + list(held or {}) + on_path
        full_lower = sum(v for v, _ in chains) + u_floor(full) if objective == "latency" else None
        search_problem = prune_nodes(problem, tables, AUTO_PER_ROLE, keep)
        search_tables = build_tables(search_problem)
        pruned = {"kept": len(search_problem.nodes), "of": len(problem.nodes)}
        opts = replace(opts, time_limit_s=min(time_limit_s, AUTO_PRUNED_TIME_LIMIT_S), run_search_share=1.0)
    inst = build_instance(search_problem, fixed_boundaries, search_tables)
    moved = _moved_bytes(inst, current, held) if min_change_epsilon is not None else None
    if solver == "greedy" and moved is None:
        paths_g = greedy_paths(inst)
        if paths_g is not None and inst.n_sources == 1 and dp_exact_applies(inst, opts):
            paths_g = (improve(inst, paths_g[0]),)
        if paths_g is not None:
            result = SearchResult(paths_g, False, -np.inf, ("greedy walk",))
            return _package(
                problem, tables, inst, result, "greedy", objective, started, fixed_boundaries, None, None
            )
        notes.append("greedy walk got stuck; fell back to the exact search")
    if solver == "dp" and not dp_exact_applies(inst, opts):
        notes.append(
            "dp does not apply (throughput, U with token rate, or restrictions); used the exact search"
        )
    incumbent = greedy_paths(inst)
    if pruned is not None and walked:
        index = {nid: i for i, nid in enumerate(inst.tables.node_ids)}
        mapped = tuple(tuple(index[tables.node_ids[n]] for n in path) for path in walked)
        incumbent = _cheaper(inst, opts, incumbent, mapped)
    groups = identical_groups(inst) if moved is None else []
    result = exact_search(inst, opts, incumbent, moved, min_change_epsilon or 0.0, groups)
    if solver == "dp" and result.notes[-1:] != ("shortest path fits memory: proven by dynamic programming",):
        notes.append("dp: memory or constraints bind; answered by the exact search")
    if pruned is not None:
        lower = full_lower if full_lower is not None else _global_lower(full, opts)
        result = SearchResult(result.paths, False, lower, result.notes)
        # A pruned plan is still optimal when it meets a bound computed over all nodes.
    result = SearchResult(result.paths, result.proven, result.lower, (*result.notes, *notes))
    return _package(
        problem, tables, inst, result, solver, objective, started, fixed_boundaries, pruned, moved
    )


def _cheaper(
    inst: Instance,
    opts: SearchOptions,
    a: tuple[tuple[int, ...], ...] | None,
    b: tuple[tuple[int, ...], ...],
) -> tuple[tuple[int, ...], ...] | None:
    """The cheaper of two candidate incumbents that fit memory (by the instance tables)."""
    from edgesplit.orchestrator.planner.exact import model_value

    if not fits(inst, list(b)):
        return a
    if a is None or not fits(inst, list(a)):
        return b
    return a if model_value(inst, opts, a) <= model_value(inst, opts, b) else b


def objective_value(cost: Cost, problem: Problem, objective: Objective) -> float:
    """What the solver minimises: Φ for latency, bottleneck + γ·P for throughput."""
    if objective == "latency":
        return cost.phi
    return cost.bottleneck_ms + problem.weights.gamma * cost.privacy


def _global_lower(full: Instance, opts: SearchOptions) -> float:
    if opts.objective == "latency":
        return sum(v for v, _ in chain_paths(full)) + u_floor(full)
    return float(full.compute_ms.min(axis=1).max())


def _moved_bytes(
    inst: Instance, current: Sequence[str] | None, held: Mapping[str, Iterable[int]] | None
) -> np.ndarray:
    """(K, N) parameter bytes node n must fetch to run unit k, given who holds which block now."""
    holders: list[set[str]] = [set() for _ in inst.problem.blocks]
    if current is not None:
        for b, node in enumerate(current):
            holders[b].add(node)
    for node, blocks in (held or {}).items():
        for b in blocks:
            if 0 <= b < len(holders):
                holders[b].add(node)
    moved = np.zeros((inst.n_units, inst.n_nodes), dtype=np.int64)
    for k in range(inst.n_units):
        for b in inst.unit_blocks(k):
            param = int(inst.problem.blocks[b].param_bytes)
            for n, nid in enumerate(inst.tables.node_ids):
                if nid not in holders[b]:
                    moved[k, n] += param
    return moved


def _package(
    problem: Problem,
    tables: Tables,
    inst: Instance,
    result: SearchResult,
    solver: str,
    objective: Objective,
    started: float,
    boundaries: Sequence[int] | None,
    pruned: dict[str, int] | None,
    moved: np.ndarray | None,
) -> Plan:
    per_source = {
        src.node: inst.expand(path) for src, path in zip(problem.sources, result.paths, strict=True)
    }
    cost = evaluate(problem, per_source, tables)
    if not cost.feasible:
        raise AssertionError(f"planner produced an infeasible plan: {cost.violations}")
    value = objective_value(cost, problem, objective)
    # ``result.lower`` is always a valid bound (shortest path, Lagrangian, CP-SAT or global), so meeting it
    # is a proof, whoever found the plan.
    optimal = bool(np.isfinite(result.lower)) and value <= result.lower * (1 + PROOF_TOLERANCE) + 1e-12
    sources = tuple(
        SourcePlan(src.node, per_source[src.node], segments_of(per_source[src.node], boundaries), lat)
        for src, lat in zip(problem.sources, cost.source_latency_ms, strict=True)
    )
    moved_total = None
    if moved is not None:
        placed = {(k, n) for path in result.paths for k, n in enumerate(path)}
        moved_total = int(sum(moved[k, n] for k, n in placed))
    return Plan(
        assignment=sources[0].assignment,
        segments=sources[0].segments,
        cost=cost,
        optimal=bool(optimal),
        solver=solver,
        solve_ms=(time.perf_counter() - started) * 1e3,
        objective=objective,
        lower_bound=result.lower if np.isfinite(result.lower) else None,
        sources=sources,
        pruned=pruned,
        moved_bytes=moved_total,
        notes=result.notes,
    )
