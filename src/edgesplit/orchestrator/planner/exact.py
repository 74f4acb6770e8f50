"""The exact solver: shortest-path bounds first, then CP-SAT on what the bounds could not rule out.

Claims a proof only when CP-SAT proved the (floor-scaled) model optimal; the caller re-checks the
claim against the real-valued cost. Pure apart from CP-SAT's own worker threads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgesplit.errors import InfeasibleError
from edgesplit.orchestrator.planner.bounds import Bound, fixing_masks, lagrangian, path_cost
from edgesplit.orchestrator.planner.cpsat import ChainModel, SearchOptions
from edgesplit.orchestrator.planner.dp import fits, shortest_path
from edgesplit.orchestrator.planner.instance import Instance
from edgesplit.orchestrator.planner.local import improve
from edgesplit.orchestrator.planner.restricted import restricted_search
from edgesplit.orchestrator.planner.runs import run_search

HOPS_PER_SECOND = 2_000
"""Model size (hop variables) CP-SAT can be built and searched with per second of time limit; above it,
building alone would eat the limit, so the incumbent is returned unproven."""
SHORTLIST_NODES = 12
"""Nodes per unit in the unproven shortlist search (small models find good plans fast)."""
MAX_RUN_SEARCH_UNITS = 400
"""The run search recurses once per run; deeper chains go to CP-SAT."""
RELATIVE_RESOLUTION = 1e-10
"""Integer scaling keeps the total rounding of any plan's cost below this fraction of the optimum."""


@dataclass(frozen=True)
class SearchResult:
    paths: tuple[tuple[int, ...], ...]
    proven: bool
    lower: float
    """Proven lower bound on the objective (Φ, or bottleneck + γ·P), -inf when none."""
    notes: tuple[str, ...] = ()


def additive_constant(inst: Instance) -> float:
    """β·U when U cannot depend on the plan (no token rate): U = max util."""
    w = inst.problem.weights
    if w.beta > 0 and all(s.token_rate == 0 for s in inst.problem.sources):
        return w.beta * float(inst.tables.util.max())
    return 0.0


def u_floor(inst: Instance) -> float:
    """A lower bound on β·U valid for every plan."""
    return inst.problem.weights.beta * float(inst.tables.util.max())


def dp_exact_applies(inst: Instance, opts: SearchOptions) -> bool:
    """Shortest paths are exact when Φ is additive and nothing couples units beyond their neighbours."""
    w = inst.problem.weights
    u_constant = w.beta == 0 or all(s.token_rate == 0 for s in inst.problem.sources)
    return (
        opts.objective == "latency"
        and u_constant
        and not opts.one_segment_per_node
        and not opts.first_on_source
    )


def chain_paths(inst: Instance) -> list[tuple[float, tuple[int, ...]]]:
    """Cheapest unconstrained chain per source; raises InfeasibleError when a source has none."""
    out = []
    for s in range(inst.n_sources):
        res = shortest_path(inst, s)
        if not res.nodes:
            src = inst.problem.sources[s]
            raise InfeasibleError(
                f"no chain from source {src.node!r} satisfies links, privacy ({src.privacy!r})"
                " and per-node memory; add a trusted node with enough memory or a link"
            )
        out.append((res.value, res.nodes))
    return out


def exact_search(
    inst: Instance,
    opts: SearchOptions,
    upper_paths: tuple[tuple[int, ...], ...] | None = None,
    moved: np.ndarray | None = None,
    epsilon: float = 0.0,
    symmetric_groups: list[list[int]] | None = None,
) -> SearchResult:
    """Optimal paths (per source) under every constraint, or the best found within the time limit."""
    deadline = time.perf_counter() + opts.time_limit_s
    chains = chain_paths(inst)
    const = additive_constant(inst)
    notes: list[str] = []
    paths0 = tuple(p for _, p in chains)
    if opts.objective == "latency":
        lower = sum(v for v, _ in chains) + u_floor(inst)
        if moved is None and dp_exact_applies(inst, opts) and fits(inst, list(paths0)):
            return SearchResult(
                paths0, True, lower, ("shortest path fits memory: proven by dynamic programming",)
            )
    else:
        lower = float(inst.compute_ms.min(axis=1).max())
    if opts.one_segment_per_node and moved is None:
        found = restricted_search(inst, opts, symmetric_groups or [])
        if found is not None:
            value, path = found
            value += const if opts.objective == "latency" else 0.0
            if model_value(inst, opts, (path,)) <= value * (1 + 1e-9) + 1e-12:
                note = "one segment per node: subset dynamic programme"
                return SearchResult((path,), True, value, (note,))
            # Two hops shared one link (the programme counts them apart): its value is only a bound.
            lower = max(lower, value)
            upper_paths = (path,)
    states = inst.allowed.copy()
    hops: list[list[np.ndarray]] | None = None
    if upper_paths is not None and inst.n_sources == 1 and dp_exact_applies(inst, opts):
        upper_paths = (improve(inst, upper_paths[0]),)  # a few ms; a good incumbent prunes the search
    if _runs_apply(inst, opts, moved):
        budget = time.perf_counter() + opts.run_search_share * opts.time_limit_s
        found = run_search(inst, None if upper_paths is None else upper_paths[0], budget)
        if found.proven and found.path is None:
            raise InfeasibleError(_infeasible_message(inst))
        if found.path is not None:
            upper_paths = (found.path,)
            if found.proven:
                note = f"run search over {found.nodes_explored} partial plans: proven"
                return SearchResult(upper_paths, True, found.value + const, (note,))
        lower = max(lower, found.lower + const)
        if opts.run_search_share >= 1.0 and upper_paths is not None:
            return SearchResult(upper_paths, False, lower, ("run search stopped at the time limit",))
        notes.append("run search stopped at its time share; CP-SAT continues")
    upper, best = _upper(inst, opts, upper_paths)
    if opts.objective == "latency":
        bounds: list[Bound] = []
        if inst.n_sources == 1:
            budget = time.perf_counter() + 0.3 * max(deadline - time.perf_counter(), 0.0)
            bound = lagrangian(inst, None if upper is None else upper - u_floor(inst), deadline=budget)
            lower = max(lower, bound.lower + u_floor(inst))
            for cand in bound.feasible_paths[-3:]:
                if dp_exact_applies(inst, opts):
                    cand = improve(inst, cand)
                upper, best = _better(inst, opts, (cand,), upper, best)
            bounds.append(bound)
        else:
            for s in range(inst.n_sources):
                res = shortest_path(inst, s, backward=True)
                zero = np.zeros(inst.n_nodes)
                bounds.append(
                    Bound(res.value, zero, res.forward, res.backward, np.zeros_like(res.forward), ())
                )
        if upper is not None:
            upper_fix = upper * (1 + epsilon) if moved is not None else upper
            hops = []
            total = sum(b.lower for b in bounds)
            for s, bound in enumerate(bounds):
                offset = total - bound.lower + u_floor(inst)
                keep, keep_hops = fixing_masks(inst, s, bound, upper_fix, offset)
                states[s] &= keep
                hops.append(keep_hops)
            notes.append(f"bounds kept {int(states.sum())} of {int(inst.allowed.sum())} (unit, node) states")
    elif upper is not None:
        upper_fix = upper * (1 + epsilon) if moved is not None else upper
        states &= (inst.compute_ms <= upper_fix * (1 + 1e-9))[None, :, :]
        hops = [
            [
                np.isfinite(h) & (h <= upper_fix * (1 + 1e-9))
                for h in (inst.hop_ms(k) for k in range(inst.n_units - 1))
            ]
            for _ in range(inst.n_sources)
        ]
    if (
        upper is not None
        and moved is None
        and lower >= upper - max(1e-12, 1e-12 * abs(upper))
        and best is not None
        and not _has_restrictions(opts)
    ):
        return SearchResult(
            best, True, lower, (*notes, "lower bound meets a feasible plan: proven by bounds")
        )
    size = _model_size(inst, states, hops)
    limit = int(HOPS_PER_SECOND * opts.time_limit_s)
    restricted = False
    if (
        size > limit
        and best is not None
        and opts.objective == "latency"
        and inst.n_sources == 1
        and moved is None
    ):
        # Too big to prove within the limit: search the most promising nodes per unit only (no proof).
        states, hops = _shortlist(inst, bounds[0], states, hops, best, limit)
        restricted = True
        notes.append(
            f"CP-SAT on a shortlist: {size} hop variables exceed {limit} for the time limit; no proof"
        )
    elif size > limit and best is not None:
        note = f"CP-SAT skipped: {size} hop variables after bounds (limit {limit} for the time limit)"
        return SearchResult(best, False, lower, (*notes, note))
    scale = _scale(inst, lower, upper)
    model = ChainModel(inst, opts, scale, states, hops, symmetric_groups)
    if best is not None:
        model.hint(best)
    # Building the model used part of the budget; CP-SAT still gets a quarter of it to search.
    outcome = model.solve(max(deadline - time.perf_counter(), 0.25 * opts.time_limit_s))
    if outcome.paths is None:
        if outcome.proven and best is None:
            raise InfeasibleError(_infeasible_message(inst))
        if best is None:
            raise InfeasibleError(
                f"no feasible plan found within {opts.time_limit_s:g} s (infeasibility not proven);"
                " raise the time limit or use --solver auto"
            )
        return SearchResult(best, False, lower, (*notes, "CP-SAT found nothing better in time"))
    if restricted:
        paths = (
            outcome.paths if model_value(inst, opts, outcome.paths) <= model_value(inst, opts, best) else best
        )  # type: ignore[arg-type]
        return SearchResult(paths, False, lower, tuple(notes))
    bound_real = max(lower, outcome.lower + const)
    paths = outcome.paths
    if (
        not outcome.proven
        and best is not None
        and model_value(inst, opts, best) < model_value(inst, opts, paths)
    ):
        paths = best  # CP-SAT stopped early on a plan worse than the incumbent it was given
        notes.append("CP-SAT stopped before matching the incumbent; kept the incumbent")
    result = SearchResult(paths, outcome.proven, bound_real, tuple(notes))
    if moved is None or outcome.scaled_value is None:
        return result
    # Min-change: within (1 + ε) of the best objective, fetch the fewest parameter bytes, then be cheapest.
    # ε is relative to the whole Φ, including the constant β·U the model leaves out.
    constant = const if opts.objective == "latency" else 0.0
    model.cap_objective(math.floor(outcome.scaled_value * (1 + epsilon) + constant * epsilon * scale))
    model.hint(outcome.paths)
    moves = model.minimize_moves(moved)
    second = model.solve(max(deadline - time.perf_counter(), 0.5))
    if second.paths is None:
        return result
    model.model.Add(moves <= round(second.lower * scale))
    model.model.Minimize(model.objective)
    model.hint(second.paths)
    third = model.solve(max(deadline - time.perf_counter(), 0.5))
    final = third.paths if third.paths is not None else second.paths
    note = "min-change: fewest moved bytes within epsilon" + ("" if second.proven else " (not proven)")
    return SearchResult(final, result.proven and second.proven, bound_real, (*notes, note))


def _runs_apply(inst: Instance, opts: SearchOptions, moved: np.ndarray | None) -> bool:
    """The run search is exact for one source, an additive objective and no extra restrictions."""
    return (
        moved is None
        and inst.n_sources == 1
        and dp_exact_applies(inst, opts)
        and inst.n_units <= MAX_RUN_SEARCH_UNITS
    )


def _shortlist(
    inst: Instance,
    bound: Bound,
    states: np.ndarray,
    hops: list[list[np.ndarray]] | None,
    best: tuple[tuple[int, ...], ...],
    limit: int,
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Per unit, the nodes with the lowest Lagrangian through-cost (and the incumbent's), sized to fit."""
    per_unit = max(2, min(SHORTLIST_NODES, int((limit / max(inst.n_units, 1)) ** 0.5)))
    with np.errstate(invalid="ignore"):
        through = bound.forward + bound.backward - (inst.state_cost[0] + bound.extra)
    through = np.where(states[0] & np.isfinite(through), through, np.inf)
    keep = np.zeros_like(states[0])
    order = np.argsort(through, axis=1, kind="stable")[:, :per_unit]
    np.put_along_axis(keep, order, True, axis=1)
    keep &= states[0]
    keep[np.arange(inst.n_units), list(best[0])] = True
    new_states = states.copy()
    new_states[0] = keep
    new_hops = [
        [
            (hops[0][k] if hops is not None else np.ones((inst.n_nodes, inst.n_nodes), dtype=bool))
            & keep[k][:, None]
            & keep[k + 1][None, :]
            for k in range(inst.n_units - 1)
        ]
    ]
    return new_states, new_hops


def _model_size(inst: Instance, states: np.ndarray, hops: list[list[np.ndarray]] | None) -> int:
    """How many hop variables the CP-SAT model would get."""
    if hops is not None:
        return int(sum(int(h.sum()) for per_source in hops for h in per_source))
    per_boundary = states[:, :-1, :].sum(axis=2) * states[:, 1:, :].sum(axis=2)
    return int(per_boundary.sum())


def _has_restrictions(opts: SearchOptions) -> bool:
    return opts.one_segment_per_node or opts.first_on_source


def _upper(
    inst: Instance, opts: SearchOptions, paths: tuple[tuple[int, ...], ...] | None
) -> tuple[float | None, tuple[tuple[int, ...], ...] | None]:
    if paths is None:
        return None, None
    return _better(inst, opts, paths, None, None)


def _better(
    inst: Instance,
    opts: SearchOptions,
    paths: tuple[tuple[int, ...], ...],
    upper: float | None,
    best: tuple[tuple[int, ...], ...] | None,
) -> tuple[float | None, tuple[tuple[int, ...], ...] | None]:
    """Keep ``paths`` as the incumbent if it is feasible for the model and cheaper."""
    if not fits(inst, list(paths)) or not _respects(inst, opts, paths):
        return upper, best
    value = model_value(inst, opts, paths)
    if upper is None or value < upper:
        return value, paths
    return upper, best


def model_value(inst: Instance, opts: SearchOptions, paths: tuple[tuple[int, ...], ...]) -> float:
    """The objective of paths by the instance tables (latency: Φ; throughput: bottleneck + γ·P)."""
    if opts.objective == "latency":
        value = sum(path_cost(inst, s, p) for s, p in enumerate(paths)) + additive_constant(inst)
        w = inst.problem.weights
        if w.beta > 0 and any(s.token_rate > 0 for s in inst.problem.sources):
            rho = inst.tables.util.copy()
            for s, p in enumerate(paths):
                for k, n in enumerate(p):
                    rho[n] += inst.problem.sources[s].token_rate / 1000 * inst.load_ms[k, n]
            value += w.beta * float(rho.max())
        return value
    busy = np.zeros(inst.n_nodes)
    links: dict[tuple[int, int], float] = {}
    soft = 0.0
    for s, p in enumerate(paths):
        src = inst.source_nodes[s]
        seq = [src, *p, src]
        sizes = [inst.problem.sources[s].input_bytes, *inst.out_bytes]
        for k, n in enumerate(p):
            busy[n] += inst.compute_ms[k, n]
            if not inst.tables.trusted[n]:
                soft += inst.problem.weights.gamma * inst.privacy_blocks[k]
        for a, b, nbytes in zip(seq[:-1], seq[1:], sizes, strict=True):
            if a != b:
                key = (min(a, b), max(a, b))
                links[key] = links.get(key, 0.0) + inst.tables.hop_ms(a, b, float(nbytes))
    return max([float(busy.max()), *links.values()]) + soft


def _respects(inst: Instance, opts: SearchOptions, paths: tuple[tuple[int, ...], ...]) -> bool:
    if not _has_restrictions(opts):
        return True
    path, src = paths[0], inst.source_nodes[0]
    if opts.first_on_source and path[0] != src:
        return False
    if opts.one_segment_per_node:
        runs = [n for k, n in enumerate(path) if k == 0 or path[k - 1] != n]
        for n in set(runs):
            limit = 2 if (n == src and opts.source_revisit and path[0] == path[-1] == src) else 1
            if runs.count(n) > limit:
                return False
    return True


def _scale(inst: Instance, lower: float, upper: float | None) -> float:
    """Integer units per cost unit: rounding over a whole plan stays below RELATIVE_RESOLUTION·optimum."""
    terms = inst.n_sources * (2 * inst.n_units + 2) + inst.n_nodes + 4
    base = max(lower, 1e-6) if math.isfinite(lower) else 1e-6
    scale = terms / (RELATIVE_RESOLUTION * base)
    top = (upper if upper is not None else base * 1e3) * 8 + 1.0
    return min(scale, 2.0**52 / top)


def _infeasible_message(inst: Instance) -> str:
    need = int(inst.param_bytes.sum())
    have = int(inst.tables.mem_bytes.sum())
    return (
        f"no assignment satisfies memory, links and privacy: the blocks need {need} bytes of weights"
        f" (plus KV) and the {inst.n_nodes} nodes hold {have} bytes in total;"
        " add memory, a trusted node or a link, or lower context_tokens/sessions"
    )
