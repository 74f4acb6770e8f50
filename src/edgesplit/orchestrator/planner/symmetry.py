"""Interchangeable nodes: equal in every attribute and in their links to every other node.

Relabelling such nodes maps plans to plans of equal cost, so the exact model may order them by first
use (symmetry breaking) without losing an optimum. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgesplit.orchestrator.planner.instance import Instance

MAX_NODES = 256


def identical_groups(inst: Instance, exclude: Iterable[int] = ()) -> list[list[int]]:
    """Groups (size ≥ 2) of interchangeable nodes, sources and ``exclude`` left out."""
    if inst.n_nodes > MAX_NODES or inst.n_sources != 1:
        return []
    t = inst.tables
    skip = set(exclude) | set(inst.source_nodes)
    by_attrs: dict[tuple[object, ...], list[int]] = {}
    for n in range(inst.n_nodes):
        if n in skip:
            continue
        key = (
            t.compute_ms[:, n].tobytes(),
            t.load_ms[:, n].tobytes(),
            float(t.util[n]),
            int(t.mem_bytes[n]),
            bool(t.trusted[n]),
        )
        by_attrs.setdefault(key, []).append(n)
    groups: list[list[int]] = []
    for members in by_attrs.values():
        pending = list(members)
        while len(pending) > 1:
            head, rest = pending[0], pending[1:]
            same = [head] + [m for m in rest if _links_equal(inst, head, m)]
            if len(same) > 1:
                groups.append(same)
            pending = [m for m in rest if m not in same]
    return groups


def _links_equal(inst: Instance, a: int, b: int) -> bool:
    t = inst.tables
    others = np.ones(inst.n_nodes, dtype=bool)
    others[[a, b]] = False
    return all(np.array_equal(arr[a, others], arr[b, others]) for arr in (t.half_rtt_ms, t.bytes_per_ms))
