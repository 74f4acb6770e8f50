"""Candidate-node pruning for large clusters: keep the sources, the trusted nodes and the k best per role.

Pure; returns a smaller problem over the kept nodes (links among them only). A plan found on it is
feasible for the full problem but optimal only if a full-problem bound proves it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgesplit.orchestrator.planner.cost import Tables
from edgesplit.orchestrator.planner.problem import Problem


def prune_nodes(problem: Problem, tables: Tables, per_role: int, keep: Iterable[str] = ()) -> Problem:
    """Sources, trusted nodes, ``keep``, and the ``per_role`` best by speed, by link to a source, by both,
    and by memory."""
    ids = tables.node_ids
    kept = {problem.index_of(s.node) for s in problem.sources} | {problem.index_of(n) for n in keep}
    kept |= set(np.flatnonzero(tables.trusted).tolist())
    total_ms = tables.compute_ms.sum(axis=0)
    typical = float(np.median(tables.out_bytes))
    src = [problem.index_of(s.node) for s in problem.sources]
    to_source = np.min([tables.hop_matrix(typical)[i] for i in src], axis=0)
    for score in (
        total_ms,
        to_source,
        total_ms + 2.0 * len(problem.blocks) ** 0.5 * to_source,
        -tables.mem_bytes.astype(float),
        total_ms / np.maximum(tables.mem_bytes.astype(float), 1.0),
    ):
        ranked = np.argsort(score, kind="stable")
        kept |= {int(i) for i in ranked[:per_role] if np.isfinite(score[i])}
    names = {ids[i] for i in kept}
    return problem.with_changes(
        nodes=tuple(n for n in problem.nodes if n.id in names),
        links=tuple(lk for lk in problem.links if lk.a in names and lk.b in names),
    )
