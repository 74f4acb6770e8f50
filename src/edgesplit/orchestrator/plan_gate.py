"""The node-side gate of the reconfiguration protocol (§4.6): which control messages a node applies.

Pure state machine: verify, check epochs, track which epoch each session runs on. It decides; the
node agent does the loading, serving and logging. A refusal is a ``PlanRejectedError`` that names why.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgesplit.errors import PlanRejectedError
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan
from edgesplit.orchestrator.signing import SignedMessage, verify


@dataclass(frozen=True)
class Applied:
    """What the node must now do: load ``plan`` (prepare), switch (commit), free (release), drop (abort)."""

    kind: MessageKind
    epoch: int
    plan: Plan | None


class PlanGate:
    """Accepts only messages signed by the configured key, with epochs that never go back.

    ``highest_seen`` is the newest epoch ever prepared; a node should persist it across restarts
    (pass it back in) so an old plan replayed after a restart is still refused.

    States of one epoch here: prepared (pending) → committed (active) → draining (superseded,
    in-flight sessions finish) → released; or prepared → aborted.
    """

    def __init__(self, public_key: Ed25519PublicKey, highest_seen: int = 0) -> None:
        self._key = public_key
        self.highest_seen = highest_seen
        self.pending: Plan | None = None
        self.active: Plan | None = None
        self.draining: dict[int, Plan] = {}
        self.sessions: dict[str, int] = {}

    @property
    def active_epoch(self) -> int | None:
        return None if self.active is None else self.active.epoch

    def handle(self, signed: SignedMessage) -> Applied:
        """Verify, then apply one message; a refusal raises ``PlanRejectedError`` and changes nothing."""
        message = verify(signed, self._key)
        match message.kind:
            case MessageKind.PREPARE:
                return self._prepare(message)
            case MessageKind.COMMIT:
                return self._commit(message.epoch)
            case MessageKind.RELEASE:
                return self._release(message.epoch)
            case MessageKind.ABORT:
                return self._abort(message.epoch)

    def _prepare(self, message: ControlMessage) -> Applied:
        if message.epoch <= self.highest_seen:
            raise PlanRejectedError(
                f"prepare for epoch {message.epoch} refused: epoch {self.highest_seen} was already seen "
                "(stale or replayed plan); the orchestrator must issue a newer epoch"
            )
        self.highest_seen = message.epoch
        self.pending = message.plan  # a newer prepare supersedes an older pending one
        return Applied(MessageKind.PREPARE, message.epoch, message.plan)

    def _commit(self, epoch: int) -> Applied:
        if self.pending is not None and self.pending.epoch == epoch:
            if self.active is not None:
                self.draining[self.active.epoch] = self.active
            self.active, self.pending = self.pending, None
            return Applied(MessageKind.COMMIT, epoch, self.active)
        if (self.active is not None and epoch <= self.active.epoch) or epoch in self.draining:
            raise PlanRejectedError(
                f"commit of epoch {epoch} refused: replayed commit (epoch {self.active_epoch} is active)"
            )
        raise PlanRejectedError(f"commit of epoch {epoch} refused: no prepare for that epoch was accepted")

    def _release(self, epoch: int) -> Applied:
        plan = self.draining.pop(epoch, None)
        if plan is None:
            what = "it is the active epoch" if epoch == self.active_epoch else "it is not a superseded epoch"
            raise PlanRejectedError(f"release of epoch {epoch} refused: {what}")
        # Sessions still on the released epoch have lost their segments; they re-prefill on the active one.
        self.sessions = {s: e for s, e in self.sessions.items() if e != epoch}
        return Applied(MessageKind.RELEASE, epoch, plan)

    def _abort(self, epoch: int) -> Applied:
        if self.pending is None or self.pending.epoch != epoch:
            raise PlanRejectedError(f"abort of epoch {epoch} refused: that epoch is not prepared here")
        plan, self.pending = self.pending, None
        return Applied(MessageKind.ABORT, epoch, plan)

    def admit_step(self, session_id: str, epoch: int) -> bool:
        """May ``session_id`` run a step on ``epoch``? Returns True when the session just moved epochs.

        A session runs on exactly one epoch at a time and only moves forward: new sessions start on
        the active epoch; a step on a newer committed epoch moves the session (the node must drop its
        KV for the old one); a step on an older epoch than the session's is refused.
        """
        committed = epoch == self.active_epoch or epoch in self.draining
        if not committed:
            raise PlanRejectedError(
                f"step of session {session_id} on epoch {epoch}: epoch not committed here"
            )
        bound = self.sessions.get(session_id)
        if bound is None:
            if epoch != self.active_epoch:
                raise PlanRejectedError(
                    f"new session {session_id} on superseded epoch {epoch}; "
                    f"new sessions start on epoch {self.active_epoch}"
                )
            self.sessions[session_id] = epoch
            return False
        if epoch < bound:
            raise PlanRejectedError(
                f"session {session_id} already moved to epoch {bound}; step on {epoch} refused"
            )
        self.sessions[session_id] = epoch
        return epoch > bound

    def end_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
