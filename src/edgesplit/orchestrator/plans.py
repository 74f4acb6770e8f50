"""The versioned plan of DESIGN §4.6 and its canonical bytes; the control messages that carry it.

Pure data: what a plan says and how it is spelled on the wire. Signing lives in ``signing.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edgesplit.errors import PlanRejectedError

PLAN_FORMAT = 1


@dataclass(frozen=True)
class PlanSegment:
    """Node ``node_id`` runs blocks ``[start, end)``."""

    node_id: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.node_id}[{self.start}:{self.end}]"


def segments_of(assignment: Sequence[str]) -> tuple[PlanSegment, ...]:
    """Runs of equal nodes in a block → node assignment, as half-open segments."""
    segments: list[PlanSegment] = []
    start = 0
    for i in range(1, len(assignment) + 1):
        if i == len(assignment) or assignment[i] != assignment[start]:
            segments.append(PlanSegment(assignment[start], start, i))
            start = i
    return tuple(segments)


def boundaries_of(assignment: Sequence[str]) -> tuple[int, ...]:
    """The cut points (block indices where a new segment starts), excluding 0."""
    return tuple(s.start for s in segments_of(assignment)[1:])


def assignment_of(segments: Sequence[PlanSegment]) -> tuple[str, ...]:
    out: list[str] = []
    for seg in segments:
        if seg.start != len(out) or seg.end <= seg.start:
            raise PlanRejectedError(
                f"segments must tile 0:B in order; {seg} does not follow block {len(out)}"
            )
        out.extend([seg.node_id] * (seg.end - seg.start))
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """A deployable plan: which node runs which blocks, under which epoch, and what it predicts."""

    epoch: int
    assignment: tuple[str, ...]
    model: str = ""
    predicted_latency_s: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def segments(self) -> tuple[PlanSegment, ...]:
        return segments_of(self.assignment)

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(self.assignment)

    def blocks_on(self, node_id: str) -> frozenset[int]:
        return frozenset(b for b, n in enumerate(self.assignment) if n == node_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "epoch": self.epoch,
            "model": self.model,
            "segments": [{"node": s.node_id, "start": s.start, "end": s.end} for s in self.segments],
            "predicted_latency_s": self.predicted_latency_s,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        try:
            if data["format"] != PLAN_FORMAT:
                raise PlanRejectedError(
                    f"plan format {data['format']} is not {PLAN_FORMAT}; upgrade the node"
                )
            segs = [PlanSegment(str(s["node"]), int(s["start"]), int(s["end"])) for s in data["segments"]]
            return cls(
                epoch=int(data["epoch"]),
                assignment=assignment_of(segs),
                model=str(data.get("model", "")),
                predicted_latency_s=data.get("predicted_latency_s"),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanRejectedError(f"malformed plan: {exc!r}") from exc


class MessageKind(StrEnum):
    """The four control messages of §4.6; the kind is inside the signed bytes so none can pose as another."""

    PREPARE = "prepare"
    COMMIT = "commit"
    RELEASE = "release"
    ABORT = "abort"


@dataclass(frozen=True)
class ControlMessage:
    """prepare carries the plan; commit/release/abort name an epoch only."""

    kind: MessageKind
    epoch: int
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "epoch": self.epoch,
            "plan": None if self.plan is None else self.plan.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControlMessage:
        try:
            kind = MessageKind(data["kind"])
            epoch = int(data["epoch"])
            plan = None if data.get("plan") is None else Plan.from_dict(data["plan"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanRejectedError(f"malformed control message: {exc!r}") from exc
        if (kind is MessageKind.PREPARE) != (plan is not None):
            need = "must carry a plan" if kind is MessageKind.PREPARE else "must not carry a plan"
            raise PlanRejectedError(f"a {kind.value} message {need}")
        if plan is not None and plan.epoch != epoch:
            raise PlanRejectedError(f"message epoch {epoch} differs from its plan's epoch {plan.epoch}")
        return cls(kind, epoch, plan)


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """Sorted-key, whitespace-free UTF-8 JSON: the same dict always signs to the same bytes."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
