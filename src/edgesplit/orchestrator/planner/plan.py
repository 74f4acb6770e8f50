"""The planner's answer: an assignment, its derived segments, its cost, and how sure we are of it.

Pure values and their §4.2 JSON form; no solving here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgesplit.orchestrator.planner.cost import Cost

Objective = Literal["latency", "throughput"]


@dataclass(frozen=True)
class Segment:
    """Blocks ``[start, end)`` executed by ``node`` (half-open, printed ``start:end``)."""

    node: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.node}[{self.start}:{self.end}]"


@dataclass(frozen=True)
class SourcePlan:
    """The chain one source's tokens follow."""

    source: str
    assignment: tuple[str, ...]
    segments: tuple[Segment, ...]
    latency_ms: float


@dataclass(frozen=True)
class Plan:
    """A solved plan. ``optimal`` promises: no feasible assignment beats its objective by > 1e-6 relative."""

    assignment: tuple[str, ...]
    segments: tuple[Segment, ...]
    cost: Cost
    optimal: bool
    solver: str
    solve_ms: float
    objective: Objective = "latency"
    lower_bound: float | None = None
    """A proven lower bound on the objective (Φ, or the bottleneck for throughput), when one is known."""
    sources: tuple[SourcePlan, ...] = ()
    pruned: dict[str, int] | None = None
    """``{"kept": k, "of": n}`` when the solver searched a subset of the nodes."""
    moved_bytes: int | None = None
    """Parameter bytes that nodes must fetch relative to the current plan (min-change mode)."""
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "assignment": list(self.assignment),
            "segments": [{"node": s.node, "start": s.start, "end": s.end} for s in self.segments],
            "cost": self.cost.to_json(),
            "optimal": self.optimal,
            "solver": self.solver,
            "solve_ms": round(self.solve_ms, 3),
            "objective": self.objective,
        }
        if self.lower_bound is not None:
            out["lower_bound"] = self.lower_bound
        if len(self.sources) > 1:
            out["sources"] = [
                {
                    "source": sp.source,
                    "assignment": list(sp.assignment),
                    "segments": [{"node": s.node, "start": s.start, "end": s.end} for s in sp.segments],
                    "latency_ms": sp.latency_ms,
                }
                for sp in self.sources
            ]
        if self.pruned is not None:
            out["pruned"] = dict(self.pruned)
        if self.moved_bytes is not None:
            out["moved_bytes"] = self.moved_bytes
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def segments_of(assignment: Sequence[str], boundaries: Sequence[int] | None = None) -> tuple[Segment, ...]:
    """Maximal runs of one node; with ``boundaries`` (fixed cut points), runs never merge across them."""
    cuts = set(boundaries or ())
    segments: list[Segment] = []
    start = 0
    for b in range(1, len(assignment) + 1):
        if b == len(assignment) or assignment[b] != assignment[start] or b in cuts:
            segments.append(Segment(assignment[start], start, b))
            start = b
    return tuple(segments)
