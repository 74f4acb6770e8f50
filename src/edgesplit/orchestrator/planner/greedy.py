"""A fast heuristic: walk the chain, giving each next run of units to the node with the lowest cost per unit.

Pure numpy, O(K²·N); no optimality claim. Used as a baseline, as an incumbent for the exact solver,
and for clusters too large to search.
"""

from __future__ import annotations

import numpy as np

from edgesplit.orchestrator.planner.instance import Instance


def greedy_paths(inst: Instance) -> tuple[tuple[int, ...], ...] | None:
    """One path per source (sources share the remaining memory), or None if the walk gets stuck."""
    remaining = inst.tables.mem_bytes.astype(float).copy()
    held = np.zeros((inst.n_units, inst.n_nodes), dtype=bool)
    paths: list[tuple[int, ...]] = []
    for s in range(inst.n_sources):
        path = _walk(inst, s, remaining, held)
        if path is None:
            return None
        paths.append(path)
    return tuple(paths)


def _walk(inst: Instance, s: int, remaining: np.ndarray, held: np.ndarray) -> tuple[int, ...] | None:
    n_units = inst.n_units
    path: list[int] = []
    cur = inst.source_nodes[s]
    k = 0
    kv = inst.demand_bytes[s] - inst.param_bytes
    # Units only trusted nodes may run (hard privacy): keep room for them on the trusted nodes.
    only_trusted = inst.allowed[s][:, inst.tables.trusted].any(axis=1) & ~inst.allowed[s][
        :, ~inst.tables.trusted
    ].any(axis=1)
    reserve_after = np.concatenate([np.cumsum((inst.demand_bytes[s] * only_trusted)[::-1])[::-1], [0.0]])
    trusted = inst.tables.trusted
    while k < n_units:
        # (R, N) memory each node would need to take units k..k+r; weights already held cost nothing.
        need = np.where(held[k:], 0.0, inst.param_bytes[k:, None]) + kv[k:, None]
        cum_need = np.cumsum(need, axis=0)
        ok = np.cumprod((cum_need <= remaining[None, :]) & inst.allowed[s, k:], axis=0).astype(bool)
        run = ok.sum(axis=0)
        # A run on a trusted node must leave the trusted nodes room for the privacy units after it.
        trusted_free = float(remaining[trusted].sum())
        for n in np.flatnonzero(trusted & (run > 0)):
            while run[n] > 0 and trusted_free - cum_need[run[n] - 1, n] < reserve_after[k + run[n]] - 1e-9:
                run[n] -= 1
        cost = np.cumsum(inst.state_cost[s, k:], axis=0)
        enter = inst.entry_cost[s] if k == 0 else inst.trans_row(s, k - 1, cur)
        last = np.clip(run - 1, 0, None)
        total = enter + cost[last, np.arange(inst.n_nodes)]
        total = total + np.where(k + run == n_units, inst.exit_cost[s], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(run > 0, total / np.maximum(run, 1), np.inf)
        score[~np.isfinite(enter)] = np.inf
        n = int(np.argmin(score))
        if not np.isfinite(score[n]):
            return None
        r = int(run[n])
        remaining[n] -= float(cum_need[r - 1, n])
        held[k : k + r, n] = True
        path.extend([n] * r)
        cur, k = n, k + r
    if not np.isfinite(inst.exit_cost[s, cur]):
        return None
    return tuple(path)
