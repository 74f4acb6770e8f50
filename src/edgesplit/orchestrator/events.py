"""The decision record: why the orchestrator kept or changed the plan, and what happened next.

Frozen values plus their JSON form (served by ``/v1/events`` and stored by ``store.py``); no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from edgesplit.orchestrator.plans import segments_of


class TriggerKind(StrEnum):
    LATENCY = "latency"  # latency EWMA > L_max
    UTILIZATION = "utilization"  # max node utilisation > U_max
    BANDWIDTH = "bandwidth"  # min bandwidth of a link the plan uses < B_min
    PRIVACY = "privacy"  # a privacy-high request would cross an untrusted node: acts at once
    NODE_LOSS = "node_loss"  # a node of the plan stopped answering: acts at once
    IMPROVEMENT = "improvement"  # periodic check that a clearly better plan has not appeared

    @property
    def urgent(self) -> bool:
        """Urgent triggers bypass the cool-down and the net-benefit guard (correctness, not speed)."""
        return self in (TriggerKind.PRIVACY, TriggerKind.NODE_LOSS)


@dataclass(frozen=True)
class TriggerFiring:
    """One trigger with the measured value and the threshold it crossed (units: s, bit/s, fraction, count)."""

    kind: TriggerKind
    value: float
    threshold: float
    subject: str = ""
    """The node or link (``a~b``) the value belongs to, when it has one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "value": self.value,
            "threshold": self.threshold,
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TriggerFiring:
        return cls(
            TriggerKind(d["kind"]), float(d["value"]), float(d["threshold"]), str(d.get("subject", ""))
        )


class CandidateKind(StrEnum):
    KEEP = "keep"  # the current plan, evaluated under E(t)
    MIGRATE = "migrate"  # same boundaries, segments on other nodes
    RESPLIT = "resplit"  # new boundaries and placement


@dataclass(frozen=True)
class CandidateRecord:
    """One plan considered, with its predictions and the move it would cost."""

    kind: CandidateKind
    assignment: tuple[str, ...]
    feasible: bool
    predicted_latency_s: float | None = None
    predicted_utilization: float | None = None
    meets_targets: bool = False
    move_bytes: int = 0
    move_s: float = 0.0
    gain_s: float = 0.0
    cost_s: float = 0.0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "assignment": list(self.assignment),
            "feasible": self.feasible,
            "predicted_latency_s": self.predicted_latency_s,
            "predicted_utilization": self.predicted_utilization,
            "meets_targets": self.meets_targets,
            "move_bytes": self.move_bytes,
            "move_s": self.move_s,
            "gain_s": self.gain_s,
            "cost_s": self.cost_s,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidateRecord:
        return cls(
            kind=CandidateKind(d["kind"]),
            assignment=tuple(d["assignment"]),
            feasible=bool(d["feasible"]),
            predicted_latency_s=d.get("predicted_latency_s"),
            predicted_utilization=d.get("predicted_utilization"),
            meets_targets=bool(d.get("meets_targets", False)),
            move_bytes=int(d.get("move_bytes", 0)),
            move_s=float(d.get("move_s", 0.0)),
            gain_s=float(d.get("gain_s", 0.0)),
            cost_s=float(d.get("cost_s", 0.0)),
            note=str(d.get("note", "")),
        )


class Action(StrEnum):
    KEEP = "keep"  # no change: no trigger, cool-down, no better plan, or the move does not pay
    RECONFIGURE = "reconfigure"  # a new plan goes out as epoch + 1


class Outcome(StrEnum):
    DECIDED = "decided"  # recorded; for a reconfiguration, rollout not finished yet
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class DecisionEvent:
    """One monitoring decision. ``phases`` holds seconds per phase: planning, prepare, commit."""

    at_s: float
    epoch: int
    action: Action
    reason: str
    triggers: tuple[TriggerFiring, ...] = ()
    candidates: tuple[CandidateRecord, ...] = ()
    chosen: CandidateRecord | None = None
    new_epoch: int | None = None
    outcome: Outcome = Outcome.DECIDED
    predicted_latency_s: float | None = None
    measured_latency_s: float | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    event_id: int | None = None

    def with_phase(self, name: str, seconds: float) -> DecisionEvent:
        return replace(self, phases={**self.phases, name: seconds})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "at_s": self.at_s,
            "epoch": self.epoch,
            "action": self.action.value,
            "reason": self.reason,
            "triggers": [t.to_dict() for t in self.triggers],
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": None if self.chosen is None else self.chosen.to_dict(),
            "new_epoch": self.new_epoch,
            "outcome": self.outcome.value,
            "predicted_latency_s": self.predicted_latency_s,
            "measured_latency_s": self.measured_latency_s,
            "phases": dict(self.phases),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecisionEvent:
        return cls(
            at_s=float(d["at_s"]),
            epoch=int(d["epoch"]),
            action=Action(d["action"]),
            reason=str(d["reason"]),
            triggers=tuple(TriggerFiring.from_dict(t) for t in d.get("triggers", ())),
            candidates=tuple(CandidateRecord.from_dict(c) for c in d.get("candidates", ())),
            chosen=None if d.get("chosen") is None else CandidateRecord.from_dict(d["chosen"]),
            new_epoch=d.get("new_epoch"),
            outcome=Outcome(d.get("outcome", "decided")),
            predicted_latency_s=d.get("predicted_latency_s"),
            measured_latency_s=d.get("measured_latency_s"),
            phases={str(k): float(v) for k, v in (d.get("phases") or {}).items()},
            event_id=d.get("id"),
        )


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an infinite move cost, a NaN estimate) as ``None``:
    strict JSON (what HTTP clients send) has no Infinity or NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def describe(event: DecisionEvent) -> str:
    """``decision: epoch 2 reconfigure -> epoch 3 [committed] bandwidth(device~mec1) ...`` on one line."""
    parts = [f"decision: epoch {event.epoch} {event.action.value}"]
    if event.new_epoch is not None:
        parts.append(f"-> epoch {event.new_epoch}")
    parts.append(f"[{event.outcome.value}]")
    if event.triggers:
        parts.append(
            ",".join(f"{t.kind.value}({t.subject})" if t.subject else t.kind.value for t in event.triggers)
        )
    parts.append(event.reason)
    if event.chosen is not None:
        chain = " ".join(str(s) for s in segments_of(event.chosen.assignment))
        parts.append(f"{event.chosen.kind.value}: {chain}")
    if event.phases:
        parts.append(" ".join(f"{k}={v:.3f}s" for k, v in event.phases.items()))
    return " ".join(parts)
