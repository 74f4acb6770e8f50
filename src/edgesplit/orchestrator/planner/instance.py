"""The numeric search instance: per-(unit, node) costs for each source, shared by every solver.

A unit is a run of blocks that must stay together: one block each when re-splitting, one fixed segment
each in migration-only mode. Pure numpy; no search here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgesplit.orchestrator.planner.cost import Tables, build_tables, source_weights
from edgesplit.orchestrator.planner.problem import Problem

HOP_MEMO_ENTRIES = 6
"""Distinct (source, payload) hop matrices kept for large clusters (8 MB each at 1024 nodes)."""


@dataclass(frozen=True, eq=False)
class Instance:
    """Costs in Φ units (weights applied) over K units × N nodes for S sources."""

    problem: Problem
    tables: Tables
    starts: tuple[int, ...]
    """First block of each unit; unit k is blocks [starts[k], starts[k + 1])."""
    compute_ms: np.ndarray  # (K, N)
    load_ms: np.ndarray  # (K, N)
    privacy_blocks: np.ndarray  # (K,) privacy-critical blocks per unit
    param_bytes: np.ndarray  # (K,) int64
    demand_bytes: np.ndarray  # (S, K) param + KV bytes of unit k for source s
    out_bytes: np.ndarray  # (K,)
    source_nodes: tuple[int, ...]
    weights: tuple[float, ...]  # each source's share of L
    allowed: np.ndarray  # (S, K, N) bool: hard privacy, and the unit alone fits the node
    state_cost: np.ndarray  # (S, K, N) α·w·compute + γ·privacy, inf when not allowed
    entry_cost: np.ndarray  # (S, N) α·w·hop(source → n, input_bytes)
    exit_cost: np.ndarray  # (S, N) α·w·hop(n → source, out_bytes of the last unit)

    @property
    def n_units(self) -> int:
        return len(self.starts)

    @property
    def n_nodes(self) -> int:
        return len(self.tables.node_ids)

    @property
    def n_sources(self) -> int:
        return len(self.source_nodes)

    def unit_blocks(self, k: int) -> range:
        end = self.starts[k + 1] if k + 1 < len(self.starts) else len(self.problem.blocks)
        return range(self.starts[k], end)

    def hop_ms(self, k: int) -> np.ndarray:
        """(N, N) hop times after unit k (unweighted ms), inf without a link."""
        cached = self._hops
        if cached is not None:
            return cached[k]
        return self._by_bytes(None, float(self.out_bytes[k]))

    def _by_bytes(self, s: int | None, nbytes: float) -> np.ndarray:
        """Large clusters: one (N, N) matrix per distinct payload (most layers share one), kept a few."""
        memo = self._hop_memo
        key = (s, nbytes)
        if key not in memo:
            if len(memo) >= HOP_MEMO_ENTRIES:
                memo.clear()
            if s is None:
                matrix = self.tables.hop_matrix(nbytes)
            else:
                matrix = _weighted(self.problem.weights.alpha * self.weights[s], self._by_bytes(None, nbytes))
            matrix.flags.writeable = False
            memo[key] = matrix
        return memo[key]

    @cached_property
    def _hop_memo(self) -> dict[tuple[int | None, float], np.ndarray]:
        return {}

    @cached_property
    def _hops(self) -> np.ndarray | None:
        """All hop matrices at once when they fit in ~32 MB (the shortest path reads them many times)."""
        if self.n_units * self.n_nodes**2 > 4_000_000:
            return None
        return np.array([self.tables.hop_matrix(float(b)) for b in self.out_bytes[:-1]])

    def trans_cost(self, s: int, k: int) -> np.ndarray:
        """(N, N) Φ cost of the hop after unit k for source s (read-only)."""
        cached = self._trans
        if cached is not None:
            return cached[s][k]
        return self._by_bytes(s, float(self.out_bytes[k]))

    @cached_property
    def _trans(self) -> list[np.ndarray] | None:
        """Every source's weighted hop matrices, when the plain ones are cached too."""
        hops = self._hops
        if hops is None or self.n_sources * hops.size > 4_000_000:
            return None
        out = []
        for s in range(self.n_sources):
            weighted = _weighted(self.problem.weights.alpha * self.weights[s], hops)
            weighted.flags.writeable = False
            out.append(weighted)
        return out

    def trans_row(self, s: int, k: int, i: int) -> np.ndarray:
        """(N,) Φ cost of the hop after unit k from node i to each node (no N×N matrix)."""
        if self._hops is not None:
            return self.trans_cost(s, k)[i]
        t = self.tables
        ms = np.where(
            t.linked[i],
            t.half_rtt_ms[i] + float(self.out_bytes[k]) * np.where(t.linked[i], t.ms_per_byte[i], 0),
            np.inf,
        )
        ms[i] = 0.0
        return _weighted(self.problem.weights.alpha * self.weights[s], ms)

    def trans_col(self, s: int, k: int, j: int) -> np.ndarray:
        """(N,) Φ cost of the hop after unit k from each node to node j (links are symmetric)."""
        return self.trans_row(s, k, j)

    def expand(self, unit_nodes: Sequence[int]) -> tuple[str, ...]:
        """Per-block node ids from per-unit node indices."""
        out: list[str] = []
        for k, n in enumerate(unit_nodes):
            out.extend([self.tables.node_ids[n]] * len(self.unit_blocks(k)))
        return tuple(out)


def build_instance(
    problem: Problem, boundaries: Sequence[int] | None = None, tables: Tables | None = None
) -> Instance:
    """Units are single blocks, or the segments cut at ``boundaries`` (block indices, 0 < b < B)."""
    t = build_tables(problem) if tables is None else tables
    n_blocks = len(problem.blocks)
    cuts = range(1, n_blocks) if boundaries is None else (b for b in boundaries if 0 < b < n_blocks)
    starts = tuple(sorted({0, *cuts}))
    ends = (*starts[1:], n_blocks)
    compute = np.array([t.compute_ms[a:e].sum(axis=0) for a, e in zip(starts, ends, strict=True)])
    load = np.array([t.load_ms[a:e].sum(axis=0) for a, e in zip(starts, ends, strict=True)])
    priv = np.array([int(t.privacy[a:e].sum()) for a, e in zip(starts, ends, strict=True)])
    params = np.array(
        [int(t.param_bytes[a:e].sum()) for a, e in zip(starts, ends, strict=True)], dtype=np.int64
    )
    kv = np.array([float(t.kv_bytes_per_token[a:e].sum()) for a, e in zip(starts, ends, strict=True)])
    out = np.array([float(t.out_bytes[e - 1]) for e in ends])
    w = problem.weights
    shares = source_weights(problem)
    index = {nid: i for i, nid in enumerate(t.node_ids)}
    src_idx = tuple(index[s.node] for s in problem.sources)
    n_src, n_units, n_nodes = len(src_idx), len(starts), len(t.node_ids)
    demand = np.array([params + kv * problem.context_tokens * s.sessions for s in problem.sources])
    allowed = np.ones((n_src, n_units, n_nodes), dtype=bool)
    state = np.empty((n_src, n_units, n_nodes))
    untrusted = ~t.trusted
    entry = np.empty((n_src, n_nodes))
    exit_ = np.empty((n_src, n_nodes))
    for si, src in enumerate(problem.sources):
        fits = demand[si][:, None] <= t.mem_bytes[None, :]
        allowed[si] &= fits
        if src.privacy == "high":
            allowed[si] &= ~((priv[:, None] > 0) & untrusted[None, :])
        state[si] = w.alpha * shares[si] * compute + w.gamma * priv[:, None] * untrusted[None, :]
        state[si][~allowed[si]] = np.inf
        s = src_idx[si]
        entry[si] = _weighted(w.alpha * shares[si], t.hop_row(s, src.input_bytes))
        exit_[si] = _weighted(w.alpha * shares[si], t.hop_row(s, float(out[-1])))
    return Instance(
        problem=problem,
        tables=t,
        starts=starts,
        compute_ms=compute,
        load_ms=load,
        privacy_blocks=priv,
        param_bytes=params,
        demand_bytes=demand,
        out_bytes=out,
        source_nodes=src_idx,
        weights=shares,
        allowed=allowed,
        state_cost=state,
        entry_cost=entry,
        exit_cost=exit_,
    )


def _weighted(factor: float, costs: np.ndarray) -> np.ndarray:
    """``factor · costs`` keeping a missing link (inf) missing even when the factor is 0."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(costs), np.inf, factor * costs)
