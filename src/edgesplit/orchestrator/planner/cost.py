"""The §4.2 cost model: per-(block, node) tables for solvers and the real-valued evaluation of a plan.

Pure and deterministic (sums run in block order); knows nothing about how plans are searched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from edgesplit.orchestrator.planner.problem import Problem

Assignment = Sequence[str]
"""One node id per block, in block order."""


@dataclass(frozen=True)
class Cost:
    """The cost breakdown of a plan (ms, fraction, count) and whether it is feasible."""

    latency_ms: float
    """L; with several sources, their latencies weighted by token rate (equal weights if all are 0)."""
    imbalance: float
    """U = max over all nodes of ρ_n."""
    privacy: int
    """P = privacy-critical blocks placed on untrusted nodes (summed over sources)."""
    phi: float
    """Φ = α·L + β·U + γ·P."""
    bottleneck_ms: float
    """Pipelined per-token stage time: max over nodes of busy time and over links of transfer time."""
    source_latency_ms: tuple[float, ...]
    feasible: bool
    violations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, float | int]:
        return {
            "latency_ms": self.latency_ms,
            "imbalance": self.imbalance,
            "privacy": self.privacy,
            "phi": self.phi,
            "bottleneck_ms": self.bottleneck_ms,
        }


@dataclass(frozen=True, eq=False)
class Tables:
    """Dense cost tables over (block, node); the arrays are never mutated after construction."""

    node_ids: tuple[str, ...]
    compute_ms: np.ndarray  # (B, N) compute(b, n)
    load_ms: np.ndarray  # (B, N) work_ms / speed, the per-token busy term of ρ
    half_rtt_ms: np.ndarray  # (N, N), 0 on the diagonal, inf without a link
    ms_per_byte: np.ndarray  # (N, N), 0 on the diagonal, inf without a link
    bytes_per_ms: np.ndarray  # (N, N) bandwidth_mbps · 125, 0 without a link
    linked: np.ndarray  # (N, N) bool, True on the diagonal
    out_bytes: np.ndarray  # (B,)
    param_bytes: np.ndarray  # (B,) int64
    kv_bytes_per_token: np.ndarray  # (B,)
    privacy: np.ndarray  # (B,) bool
    trusted: np.ndarray  # (N,) bool
    util: np.ndarray  # (N,)
    mem_bytes: np.ndarray  # (N,) int64

    def hop_ms(self, i: int, j: int, nbytes: float) -> float:
        if i == j:
            return 0.0
        if not self.linked[i, j]:
            return float("inf")
        return float(self.half_rtt_ms[i, j] + nbytes * self.ms_per_byte[i, j])

    def hop_row(self, i: int, nbytes: float) -> np.ndarray:
        """(N,) hop times from node i (links are symmetric, so also to node i); inf without a link."""
        with np.errstate(invalid="ignore"):
            row = self.half_rtt_ms[i] + nbytes * self.ms_per_byte[i]
        row[~self.linked[i]] = np.inf
        row[i] = 0.0
        return row

    def hop_matrix(self, nbytes: float) -> np.ndarray:
        """(N, N) hop times for a payload; inf where there is no link."""
        with np.errstate(invalid="ignore"):
            m = self.half_rtt_ms + nbytes * self.ms_per_byte
        m[~self.linked] = np.inf  # 0 bytes · inf would be NaN
        np.fill_diagonal(m, 0.0)
        return m


def build_tables(problem: Problem) -> Tables:
    ids = problem.node_ids
    n_nodes, n_blocks = len(ids), len(problem.blocks)
    work = np.array([b.work_ms for b in problem.blocks], dtype=float)
    load = np.empty((n_blocks, n_nodes))
    compute = np.empty((n_blocks, n_nodes))
    for j, node in enumerate(problem.nodes):
        if node.block_ms is not None:
            load[:, j] = node.block_ms
            compute[:, j] = np.array(node.block_ms) / (1.0 - node.util)
        else:
            load[:, j] = work / node.speed
            compute[:, j] = work / (node.speed * (1.0 - node.util))
    half_rtt = np.full((n_nodes, n_nodes), np.inf)
    per_byte = np.full((n_nodes, n_nodes), np.inf)
    rate = np.zeros((n_nodes, n_nodes))
    index = {nid: i for i, nid in enumerate(ids)}
    links = problem.links
    if links:
        count = len(links)
        first = np.fromiter(map(index.__getitem__, map(attrgetter("a"), links)), np.int64, count)
        second = np.fromiter(map(index.__getitem__, map(attrgetter("b"), links)), np.int64, count)
        rtt = np.fromiter(map(attrgetter("rtt_ms"), links), float, count)
        mbps = np.fromiter(map(attrgetter("bandwidth_mbps"), links), float, count)
        for a, b in ((first, second), (second, first)):
            half_rtt[a, b] = rtt / 2
            rate[a, b] = mbps * 125
            per_byte[a, b] = 1.0 / (mbps * 125)
    np.fill_diagonal(half_rtt, 0.0)
    np.fill_diagonal(per_byte, 0.0)
    return Tables(
        node_ids=ids,
        compute_ms=compute,
        load_ms=load,
        half_rtt_ms=half_rtt,
        ms_per_byte=per_byte,
        bytes_per_ms=rate,
        linked=np.isfinite(half_rtt),
        out_bytes=np.array([b.out_bytes for b in problem.blocks], dtype=float),
        param_bytes=np.array([b.param_bytes for b in problem.blocks], dtype=np.int64),
        kv_bytes_per_token=np.array([b.kv_bytes_per_token for b in problem.blocks], dtype=float),
        privacy=np.array([b.privacy for b in problem.blocks], dtype=bool),
        trusted=np.array([n.trusted for n in problem.nodes], dtype=bool),
        util=np.array([n.util for n in problem.nodes], dtype=float),
        mem_bytes=np.array([n.mem_bytes for n in problem.nodes], dtype=np.int64),
    )


def source_weights(problem: Problem) -> tuple[float, ...]:
    """Each source's share of L: its token rate over the total (equal shares when all rates are 0)."""
    rates = [s.token_rate for s in problem.sources]
    total = sum(rates)
    if total > 0:
        return tuple(r / total for r in rates)
    return tuple(1.0 / len(rates) for _ in rates)


def evaluate(
    problem: Problem, assignment: Assignment | Mapping[str, Assignment], tables: Tables | None = None
) -> Cost:
    """Φ and its parts for an assignment, with the real-valued §4.2 formulas; also checks feasibility.

    ``assignment`` is one node id per block (single source) or a mapping source node → assignment.
    """
    t = build_tables(problem) if tables is None else tables
    per_source = _per_source(problem, assignment)
    index = {nid: i for i, nid in enumerate(t.node_ids)}
    n_blocks = len(problem.blocks)
    violations: list[str] = []
    busy = [0.0] * len(t.node_ids)
    rho_load = [0.0] * len(t.node_ids)
    link_ms: dict[tuple[int, int], float] = {}
    held: list[set[int]] = [set() for _ in t.node_ids]
    kv_bytes = [0.0] * len(t.node_ids)
    latencies: list[float] = []
    privacy = 0

    def hop(i: int, j: int, nbytes: float) -> float:
        if i == j:
            return 0.0
        if not t.linked[i, j]:
            violations.append(f"no link between {t.node_ids[i]!r} and {t.node_ids[j]!r}")
            return float("inf")
        ms = float(t.half_rtt_ms[i, j]) + nbytes / float(t.bytes_per_ms[i, j])
        key = (min(i, j), max(i, j))
        link_ms[key] = link_ms.get(key, 0.0) + ms
        return ms

    for src, nodes in zip(problem.sources, per_source, strict=True):
        if len(nodes) != n_blocks:
            raise ValueError(
                f"assignment for source {src.node!r} has {len(nodes)} entries, expected {n_blocks}"
            )
        x = [index[n] for n in nodes]
        s = index[src.node]
        latency = hop(s, x[0], src.input_bytes)
        for b, n in enumerate(x):
            latency += float(t.compute_ms[b, n])
            busy[n] += float(t.compute_ms[b, n])
            rho_load[n] += src.token_rate / 1000 * float(t.load_ms[b, n])
            held[n].add(b)
            kv_bytes[n] += float(t.kv_bytes_per_token[b]) * problem.context_tokens * src.sessions
            if t.privacy[b] and not t.trusted[n]:
                privacy += 1
                if src.privacy == "high":
                    violations.append(
                        f"privacy-critical block {b} of source {src.node!r}"
                        f" on untrusted node {t.node_ids[n]!r}"
                    )
            nxt = x[b + 1] if b + 1 < n_blocks else s
            latency += hop(n, nxt, float(t.out_bytes[b]))
        latencies.append(latency)
    for n, nid in enumerate(t.node_ids):
        need = sum(int(t.param_bytes[b]) for b in sorted(held[n])) + kv_bytes[n]
        if need > t.mem_bytes[n]:
            violations.append(f"node {nid!r} needs {need:.0f} bytes but has {int(t.mem_bytes[n])}")
    weights = source_weights(problem)
    latency_ms = sum(w * lat for w, lat in zip(weights, latencies, strict=True))
    imbalance = max(float(t.util[n]) + rho_load[n] for n in range(len(t.node_ids)))
    w = problem.weights
    phi = w.alpha * latency_ms + w.beta * imbalance + w.gamma * privacy
    bottleneck = max([*busy, *link_ms.values()])
    return Cost(
        latency_ms=latency_ms,
        imbalance=imbalance,
        privacy=privacy,
        phi=phi,
        bottleneck_ms=bottleneck,
        source_latency_ms=tuple(latencies),
        feasible=not violations,
        violations=tuple(violations),
    )


def _per_source(problem: Problem, assignment: Assignment | Mapping[str, Assignment]) -> list[Sequence[str]]:
    if isinstance(assignment, Mapping):
        missing = [s.node for s in problem.sources if s.node not in assignment]
        if missing:
            raise ValueError(f"no assignment for sources {missing}")
        return [assignment[s.node] for s in problem.sources]
    if len(problem.sources) != 1:
        raise ValueError("a problem with several sources needs a mapping source -> assignment")
    return [assignment]
