"""SQLite persistence of the orchestrator: plans by epoch, the highest epoch issued, the decision log.

Lets a restarted orchestrator continue the epoch sequence and adopt the plan the nodes serve instead
of re-deploying. Owns the database file and nothing else; one connection, used from one thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from edgesplit.orchestrator.events import DecisionEvent
from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.signing import SignedMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    epoch INTEGER PRIMARY KEY,
    plan_json TEXT NOT NULL,
    signed_json TEXT,
    status TEXT NOT NULL,
    at_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at_s REAL NOT NULL, body TEXT NOT NULL
);
"""
_SCHEMA_VERSION = "1"


class PlanStatus(StrEnum):
    ISSUED = "issued"  # signed and sent to prepare; not known to be serving
    COMMITTED = "committed"  # every node committed it; the newest committed plan is the current one
    ABORTED = "aborted"  # prepare failed; its epoch is burnt and never reused


@dataclass(frozen=True)
class StoredPlan:
    plan: Plan
    status: PlanStatus
    signed: SignedMessage | None


class OrchestratorStore:
    """The orchestrator's durable state. Implements the controller's ``EventSink``."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path))
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    # ---- plans -----------------------------------------------------------------------------------

    def record_plan(
        self, plan: Plan, status: PlanStatus, at_s: float, signed: SignedMessage | None = None
    ) -> None:
        """Write before broadcasting: a crash mid-rollout must never lead to the epoch being reused."""
        self._db.execute(
            "INSERT INTO plans (epoch, plan_json, signed_json, status, at_s) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(epoch) DO UPDATE SET status = excluded.status, at_s = excluded.at_s",
            (
                plan.epoch,
                json.dumps(plan.to_dict(), sort_keys=True),
                None if signed is None else signed.to_json(),
                status.value,
                at_s,
            ),
        )
        self._bump_epoch(plan.epoch)
        self._db.commit()

    def set_status(self, epoch: int, status: PlanStatus, at_s: float) -> None:
        cur = self._db.execute(
            "UPDATE plans SET status = ?, at_s = ? WHERE epoch = ?", (status.value, at_s, epoch)
        )
        if cur.rowcount != 1:
            raise KeyError(f"no stored plan with epoch {epoch}")
        self._db.commit()

    def plan(self, epoch: int) -> StoredPlan | None:
        row = self._db.execute(
            "SELECT plan_json, status, signed_json FROM plans WHERE epoch = ?", (epoch,)
        ).fetchone()
        return None if row is None else _stored(row)

    def current_plan(self) -> StoredPlan | None:
        """The newest committed plan."""
        row = self._db.execute(
            "SELECT plan_json, status, signed_json FROM plans WHERE status = ? ORDER BY epoch DESC LIMIT 1",
            (PlanStatus.COMMITTED.value,),
        ).fetchone()
        return None if row is None else _stored(row)

    def highest_epoch(self) -> int:
        """The highest epoch ever issued (committed, aborted or in flight): the next one is this + 1."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'highest_epoch'").fetchone()
        return 0 if row is None else int(row[0])

    def _bump_epoch(self, epoch: int) -> None:
        if epoch > self.highest_epoch():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('highest_epoch', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(epoch),),
            )

    def note_epoch_seen(self, epoch: int) -> None:
        """A node reported an epoch we have no record of (lost write): never issue it again."""
        self._bump_epoch(epoch)
        self._db.commit()

    # ---- events ----------------------------------------------------------------------------------

    def append(self, event: DecisionEvent) -> int:
        cur = self._db.execute(
            "INSERT INTO events (at_s, body) VALUES (?, ?)", (event.at_s, json.dumps(event.to_dict()))
        )
        self._db.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update(self, event: DecisionEvent) -> None:
        if event.event_id is None:
            raise KeyError("event has no id; append it first")
        body = json.dumps(event.to_dict())
        cur = self._db.execute("UPDATE events SET body = ? WHERE id = ?", (body, event.event_id))
        if cur.rowcount != 1:
            raise KeyError(f"no stored event with id {event.event_id}")
        self._db.commit()

    def events(self, after_id: int = 0, limit: int = 100) -> list[DecisionEvent]:
        """Events with id > ``after_id``, oldest first (what ``/v1/events`` streams from)."""
        rows = self._db.execute(
            "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [replace(DecisionEvent.from_dict(json.loads(body)), event_id=int(i)) for i, body in rows]


def _stored(row: tuple[str, str, str | None]) -> StoredPlan:
    plan_json, status, signed_json = row
    signed = None if signed_json is None else SignedMessage.from_json(signed_json)
    return StoredPlan(Plan.from_dict(json.loads(plan_json)), PlanStatus(status), signed)


@dataclass(frozen=True)
class Reconciliation:
    """What a restarted orchestrator does: adopt ``plan`` (no redeploy), or deploy a fresh one."""

    plan: Plan | None
    next_epoch: int
    reason: str

    @property
    def needs_deploy(self) -> bool:
        return self.plan is None


def reconcile(store: OrchestratorStore, reported_epochs: Mapping[str, int]) -> Reconciliation:
    """Pick the plan to continue with after a restart, from the store and the nodes' active epochs.

    The nodes are the truth about what serves: the newest epoch that every node it names reports
    as active is adopted (and marked committed if the crash came between commit and the write).
    Otherwise the stored current plan is adopted if its nodes still serve it; else a deploy is needed.
    """
    for epoch in sorted(set(reported_epochs.values()), reverse=True):
        stored = store.plan(epoch)
        if stored is None:
            store.note_epoch_seen(epoch)
            continue
        if all(reported_epochs.get(n) == epoch for n in stored.plan.nodes):
            if stored.status is not PlanStatus.COMMITTED:
                store.set_status(epoch, PlanStatus.COMMITTED, at_s=0.0)
            return Reconciliation(stored.plan, store.highest_epoch() + 1, f"nodes serve epoch {epoch}")
    current = store.current_plan()
    if current is not None and not reported_epochs:
        return Reconciliation(current.plan, store.highest_epoch() + 1, "no node reported yet; stored plan")
    why = "no stored plan" if current is None else "nodes do not serve the stored plan"
    return Reconciliation(None, store.highest_epoch() + 1, why)
