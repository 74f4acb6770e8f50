"""Local search on one source's chain: move a segment, or its first or last unit, to a better node.

Pure numpy; only for additive objectives (α·L + γ·P, constant U) with no restrictions. Each pass
prices every move against every node at once and takes the best improving one that fits memory.
"""

from __future__ import annotations

import numpy as np

from edgesplit.orchestrator.planner.instance import Instance

MAX_MOVES = 200


def improve(inst: Instance, path: tuple[int, ...]) -> tuple[int, ...]:
    """A path no worse than ``path`` (feasible paths stay feasible)."""
    if inst.n_sources != 1:
        return path
    x = list(path)
    k_units = inst.n_units
    cost = np.where(inst.allowed[0], inst.state_cost[0], np.inf)
    demand = inst.demand_bytes[0]
    cap = inst.tables.mem_bytes.astype(float)
    for _ in range(MAX_MOVES):
        used = np.bincount(np.array(x), weights=demand, minlength=inst.n_nodes)
        best_gain, best_move = 1e-12, None
        starts = [k for k in range(k_units) if k == 0 or x[k - 1] != x[k]]
        for si, a in enumerate(starts):
            b = starts[si + 1] if si + 1 < len(starts) else k_units
            u = x[a]
            for lo, hi in {(a, b), (a, a + 1), (b - 1, b)}:
                gain = _gains(inst, x, cost, lo, hi, u)
                need = float(demand[lo:hi].sum())
                fits = cap - used >= need
                fits[u] = True
                gain[~fits] = -np.inf
                v = int(np.argmax(gain))
                if v != u and gain[v] > best_gain:
                    best_gain, best_move = float(gain[v]), (lo, hi, v)
        if best_move is None:
            break
        lo, hi, v = best_move
        x[lo:hi] = [v] * (hi - lo)
    return tuple(x)


def _gains(inst: Instance, x: list[int], cost: np.ndarray, lo: int, hi: int, u: int) -> np.ndarray:
    """(N,) cost saved by moving units [lo, hi) from node u to each node (inf-safe)."""
    k_units = inst.n_units
    stay = cost[lo:hi].sum(axis=0)  # (N,)
    enter = inst.entry_cost[0] if lo == 0 else inst.trans_row(0, lo - 1, x[lo - 1])
    leave = inst.exit_cost[0] if hi == k_units else inst.trans_col(0, hi - 1, x[hi])
    total = stay + enter + leave
    with np.errstate(invalid="ignore"):
        gain = total[u] - total
    gain[~np.isfinite(total)] = -np.inf
    return gain
