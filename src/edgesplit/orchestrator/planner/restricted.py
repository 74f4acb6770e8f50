"""Exact dynamic programme for the EdgeShard/PipeEdge formulation: every node runs at most one segment.

A subset DP over (units covered, how many nodes of each interchangeable group are used, last group),
O(K²·Π(n_g + 1)·G²) — small when nodes come in a few identical types (PipeEdge ``schedule.cpp``).
With source revisit, the first cut is enumerated and the source may also run the last segment, sharing
its memory (papers.md §5.2). Pure Python over numpy prefix sums.
"""

from __future__ import annotations

import math

import numpy as np

from edgesplit.orchestrator.planner.cpsat import SearchOptions
from edgesplit.orchestrator.planner.instance import Instance

MAX_STATES = 2_000_000
Path = tuple[int, ...]


def restricted_search(
    inst: Instance, opts: SearchOptions, groups: list[list[int]]
) -> tuple[float, Path] | None:
    """Best value and path, or None when the formulation is not covered here (caller uses CP-SAT)."""
    w = inst.problem.weights
    if inst.n_sources != 1:
        return None
    if opts.objective == "latency" and w.beta > 0 and inst.problem.source.token_rate > 0:
        return None  # U couples all nodes; not a path cost
    if opts.objective == "throughput" and w.gamma > 0 and np.any(inst.allowed[0] & ~inst.tables.trusted):
        return None  # bottleneck + γ·P does not decompose
    src = inst.source_nodes[0]
    grouped = {n for g in groups for n in g}
    members = [*groups, *([n] for n in range(inst.n_nodes) if n not in grouped)]
    size = 1
    for g in members:
        size *= len(g) + 1
    if size * inst.n_units * len(members) > MAX_STATES:
        return None
    return _Search(inst, opts, members, src).run()


class _Search:
    def __init__(self, inst: Instance, opts: SearchOptions, members: list[list[int]], src: int) -> None:
        self.inst, self.opts, self.members, self.src = inst, opts, members, src
        self.sgroup = next(g for g, m in enumerate(members) if src in m)
        k = inst.n_units
        self.thr = opts.objective == "throughput"
        finite = np.where(inst.allowed[0], inst.state_cost[0], 0.0)  # disallowed states: see cum_bad
        self.cum_cost = np.vstack([np.zeros(inst.n_nodes), np.cumsum(finite, axis=0)])
        self.cum_busy = np.vstack([np.zeros(inst.n_nodes), np.cumsum(inst.compute_ms, axis=0)])
        self.cum_bad = np.vstack([np.zeros(inst.n_nodes), np.cumsum(~inst.allowed[0], axis=0)])
        self.cum_mem = np.concatenate([[0.0], np.cumsum(inst.demand_bytes[0])])
        self.cap = inst.tables.mem_bytes.astype(float)
        self.k = k
        self.input = inst.problem.source.input_bytes

    def seg_ok(self, n: int, i: int, j: int, cap: float) -> bool:
        return self.cum_bad[j, n] == self.cum_bad[i, n] and self.cum_mem[j] - self.cum_mem[i] <= cap

    def seg_cost(self, n: int, i: int, j: int) -> float:
        table = self.cum_busy if self.thr else self.cum_cost
        return float(table[j, n] - table[i, n])

    def hop(self, a: int, b: int, after_unit: int | None) -> float:
        """Cost (latency: weighted Φ; throughput: link ms) of the hop a → b after a unit (None: input)."""
        inst = self.inst
        if a == b:
            return 0.0
        if after_unit is None:
            return float(inst.tables.hop_ms(a, b, self.input) if self.thr else inst.entry_cost[0, b])
        ms = float(inst.hop_ms(after_unit)[a, b])
        return ms if self.thr else float(inst.trans_cost(0, after_unit)[a, b])

    def exit(self, n: int) -> float:
        inst = self.inst
        if n == self.src:
            return 0.0
        if self.thr:
            return inst.tables.hop_ms(n, self.src, float(inst.out_bytes[-1]))
        return float(inst.exit_cost[0, n])

    def add(self, a: float, b: float) -> float:
        return max(a, b) if self.thr else a + b

    def run(self) -> tuple[float, Path] | None:
        zero = tuple(0 for _ in self.members)
        best = None if self.opts.first_on_source else self._dp({(0, zero, -1): (0.0, None)}, None)
        if self.opts.source_revisit or self.opts.first_on_source:
            src, g = self.src, self.sgroup
            used = tuple(1 if h == g else 0 for h in range(len(self.members)))
            for c1 in range(1, self.k + 1):
                if not self.seg_ok(src, 0, c1, self.cap[src]):
                    break
                first = self.seg_cost(src, 0, c1)
                if c1 == self.k:  # the whole chain on the source
                    if best is None or first < best[0]:
                        best = (first, tuple([src] * self.k))
                    break
                budget = self.cap[src] - (self.cum_mem[c1] - self.cum_mem[0])
                start = {(c1, used, g): (first, (-1, 0, c1))}
                closing = (budget, first if self.thr else 0.0) if self.opts.source_revisit else None
                cand = self._dp(start, closing, seed=(src, 0, c1))
                if cand is not None and (best is None or cand[0] < best[0]):
                    best = cand
        return best

    def _dp(
        self,
        start: dict[tuple[int, tuple[int, ...], int], tuple[float, object]],
        last_on_source: tuple[float, float] | None,
        seed: tuple[int, int, int] | None = None,
    ) -> tuple[float, Path] | None:
        """Forward DP from ``start`` states; with ``last_on_source`` the source may close the chain."""
        members, k = self.members, self.k
        layers: list[dict[tuple[tuple[int, ...], int], tuple[float, object]]] = [{} for _ in range(k + 1)]
        for (i, usage, u), val in start.items():
            layers[i][(usage, u)] = val
        final: tuple[float, object] | None = None
        for i in range(k):
            for (usage, u), (val, _) in list(layers[i].items()):
                prev = self._node(u, usage) if u >= 0 else self.src
                for v, group in enumerate(members):
                    if usage[v] >= len(group):
                        continue
                    n = group[usage[v]]
                    hop = self.hop(prev, n, None if i == 0 else i - 1) if (u >= 0 or i == 0) else 0.0
                    if not math.isfinite(hop):
                        continue
                    new_usage = (*usage[:v], usage[v] + 1, *usage[v + 1 :])
                    for j in range(i + 1, k + 1):
                        if not self.seg_ok(n, i, j, self.cap[n]):
                            break
                        total = self.add(self.add(val, hop), self.seg_cost(n, i, j))
                        if j == k:
                            total = self.add(total, self.exit(n))
                            if not math.isfinite(total):
                                continue  # no link back to the source
                            if final is None or total < final[0]:
                                final = (total, ((i, usage, u), v, j))
                            continue
                        key = (new_usage, v)
                        if key not in layers[j] or total < layers[j][key][0]:
                            layers[j][key] = (total, ((i, usage, u), v, j))
                if last_on_source is not None and u >= 0:
                    budget, first_busy = last_on_source
                    s = self.src
                    if self.seg_ok(s, i, k, budget):
                        hop = self.hop(prev, s, i - 1)
                        seg = self.seg_cost(s, i, k) + first_busy
                        total = self.add(self.add(val, hop), seg)
                        if math.isfinite(total) and (final is None or total < final[0]):
                            final = (total, ((i, usage, u), -2, k))
        if final is None or not math.isfinite(final[0]):
            return None
        return final[0], self._path(final, layers, seed)

    def _node(self, group: int, usage: tuple[int, ...]) -> int:
        """The member of ``group`` used most recently (members are taken in order)."""
        return self.members[group][usage[group] - 1]

    def _path(
        self, final: tuple[float, object], layers: list[dict], seed: tuple[int, int, int] | None
    ) -> Path:
        """Walk parent pointers ((i, usage, last), group, j) back to a start state."""
        out = [-1] * self.k
        ptr = final[1]
        while isinstance(ptr, tuple) and isinstance(ptr[0], tuple):
            (i, usage, u), v, j = ptr
            n = self.src if v == -2 else self.members[v][usage[v]]
            out[i:j] = [n] * (j - i)
            ptr = layers[i][(usage, u)][1]
        if seed is not None:
            s, a, b = seed
            out[a:b] = [s] * (b - a)
        return tuple(out)
