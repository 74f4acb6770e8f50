"""Shortest paths over (unit, node) states: the exact solver when Φ is additive, and bounds for the rest.

Pure numpy, O(K·N²) per pass. The path ignores cumulative per-node limits (memory, load); a caller
that needs them checks the path or prices them in through ``extra`` (Lagrangian multipliers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgesplit.orchestrator.planner.instance import Instance


@dataclass(frozen=True, eq=False)
class PathResult:
    value: float
    """Cheapest path cost (inf when no path exists)."""
    nodes: tuple[int, ...]
    """Node index per unit along the cheapest path (empty when none)."""
    forward: np.ndarray  # (K, N) cheapest prefix ending with unit k on n, including its state cost
    backward: np.ndarray  # (K, N) cheapest suffix starting with unit k on n, including its state cost


def shortest_path(
    inst: Instance, s: int, extra: np.ndarray | None = None, backward: bool = False
) -> PathResult:
    """Cheapest chain for source ``s`` with optional extra per-(unit, node) costs."""
    cost = inst.state_cost[s] if extra is None else inst.state_cost[s] + extra
    n_units = inst.n_units
    fwd = np.empty_like(cost)
    arg = np.zeros(cost.shape, dtype=np.int64)
    fwd[0] = inst.entry_cost[s] + cost[0]
    incoming: dict[int, np.ndarray] = {}  # large clusters: one matrix serves many units
    for k in range(1, n_units):
        arg[k], best = _relax_step(fwd[k - 1], inst.trans_cost(s, k - 1), incoming)
        fwd[k] = best + cost[k]
    final = fwd[-1] + inst.exit_cost[s]
    last = int(np.argmin(final))
    value = float(final[last])
    nodes: tuple[int, ...] = ()
    if np.isfinite(value):
        path = [last]
        for k in range(n_units - 1, 0, -1):
            path.append(int(arg[k][path[-1]]))
        nodes = tuple(reversed(path))
    bwd = np.empty((0, 0))
    if backward:
        bwd = np.empty_like(cost)
        bwd[-1] = inst.exit_cost[s] + cost[-1]
        for k in range(n_units - 2, -1, -1):
            total = inst.trans_cost(s, k) + bwd[k + 1][None, :]
            bwd[k] = total.min(axis=1) + cost[k]
    return PathResult(value=value, nodes=nodes, forward=fwd, backward=bwd)


SHORTLIST_ABOVE = 256
"""Nodes above which a relaxation step first tries the cheapest predecessors only."""
SHORTLIST = 48


def _relax_step(
    prev: np.ndarray, trans: np.ndarray, incoming: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """For every node j: argmin and min over i of prev[i] + trans[i, j] (lowest i on ties).

    On large clusters the cheapest ``SHORTLIST`` predecessors answer most columns exactly: another
    i ≠ j costs at least the smallest prev outside the shortlist plus the column's cheapest hop in, and
    i = j costs prev[j]. Columns not settled strictly are scanned in full: the result equals a full scan.
    """
    n = prev.shape[0]
    cols = np.arange(n)
    if n <= SHORTLIST_ABOVE:
        arg = np.argmin(prev[:, None] + trans, axis=0)
        return arg, prev[arg] + trans[arg, cols]
    short = np.sort(np.argpartition(prev, SHORTLIST)[:SHORTLIST])
    part = prev[short][:, None] + trans[short]
    pick = np.argmin(part, axis=0)
    arg = short[pick]
    best = part[pick, cols]
    stay = (prev < best) | ((prev == best) & (cols < arg))  # j itself is always a candidate (hop 0)
    arg = np.where(stay, cols, arg)
    best = np.where(stay, prev, best)
    outside = np.ones(n, dtype=bool)
    outside[short] = False
    floor = prev[outside].min() if outside.any() else np.inf
    if id(trans) not in incoming:
        off = trans.copy()
        np.fill_diagonal(off, np.inf)
        incoming[id(trans)] = off.min(axis=0)
    cheapest_in = incoming[id(trans)]
    unsure = np.flatnonzero(~(best < floor + cheapest_in))
    if unsure.size:
        # Only predecessors with prev[i] <= best[j] - cheapest_in[j] can tie or beat a column's best.
        rows = np.flatnonzero(prev <= (best[unsure] - cheapest_in[unsure]).max())
        sub = prev[rows][:, None] + trans[np.ix_(rows, unsure)]
        pick = np.argmin(sub, axis=0)
        value, cand = sub[pick, np.arange(unsure.size)], rows[pick]
        take = (value < best[unsure]) | ((value == best[unsure]) & (cand < arg[unsure]))
        arg[unsure[take]] = cand[take]
        best[unsure[take]] = value[take]
    return arg, best


def memory_use(inst: Instance, paths: list[tuple[int, ...]]) -> np.ndarray:
    """(N,) bytes each node needs for these per-source paths (weights once per block, KV per source)."""
    used = np.zeros(inst.n_nodes)
    held = np.zeros((inst.n_units, inst.n_nodes), dtype=bool)
    for s, path in enumerate(paths):
        for k, n in enumerate(path):
            held[k, n] = True
            used[n] += inst.demand_bytes[s, k] - inst.param_bytes[k]
    used += (held * inst.param_bytes[:, None]).sum(axis=0)
    return used


def fits(inst: Instance, paths: list[tuple[int, ...]]) -> bool:
    return bool(np.all(memory_use(inst, paths) <= inst.tables.mem_bytes))
