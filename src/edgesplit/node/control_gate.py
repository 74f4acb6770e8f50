"""The node's side of signed plans (DESIGN §4.6): every control RPC passes ``PlanGate`` before it acts.

Decides and logs refusals only; loading and freeing segments stay in ``NodeService``.
"""

from __future__ import annotations

import logging

from edgesplit.errors import PlanRejectedError
from edgesplit.orchestrator.plan_gate import Applied, PlanGate
from edgesplit.orchestrator.plans import MessageKind, Plan
from edgesplit.orchestrator.signing import SignedMessage, public_key_from_text, verify
from edgesplit.wire.messages import PlanSegment, PlanSpec

log = logging.getLogger(__name__)


class ControlGate:
    """Signed control messages → what the node may do; unsigned ones only when explicitly allowed.

    With a key: prepare carries a signed ``ControlMessage`` (not a bare ``PlanSpec``); commit and
    release carry a signed commit / release-or-abort for the epoch they name. Without a key and without
    ``allow_unsigned``, every control message is refused (a node must never obey just anyone).
    """

    def __init__(self, node_id: str, public_key_text: str | None, allow_unsigned: bool) -> None:
        self.node_id = node_id
        self._key = None if public_key_text is None else public_key_from_text(public_key_text)
        self.gate = None if self._key is None else PlanGate(self._key)
        self.allow_unsigned = allow_unsigned

    def started(self, epoch: int) -> None:
        """The node committed its start-up segments as ``epoch`` itself; a signed plan may supersede it."""
        if self.gate is not None and self.gate.active is None:
            self.gate.active = Plan(epoch, ())  # this node's part only: the gate keeps no assignment for it
            self.gate.highest_seen = max(self.gate.highest_seen, epoch)

    def prepare(self, payload: bytes, signature: bytes) -> PlanSpec:
        """The plan to load, after the signature and epoch checks."""
        if self.gate is None:
            self._unsigned("prepare")
            return PlanSpec.parse(payload)
        applied = self._handle("prepare", payload, signature, (MessageKind.PREPARE,), None)
        assert applied.plan is not None
        segments = tuple(PlanSegment(s.node_id, s.start, s.end) for s in applied.plan.segments)
        return PlanSpec(applied.epoch, segments)

    def commit(self, epoch: int, payload: bytes, signature: bytes) -> None:
        if self.gate is None:
            self._unsigned("commit")
            return
        self._handle("commit", payload, signature, (MessageKind.COMMIT,), epoch)

    def release(self, epoch: int, payload: bytes, signature: bytes) -> MessageKind:
        """RELEASE of a superseded epoch or ABORT of a prepared one (the Release RPC carries both)."""
        if self.gate is None:
            self._unsigned("release")
            return MessageKind.RELEASE
        return self._handle(
            "release", payload, signature, (MessageKind.RELEASE, MessageKind.ABORT), epoch
        ).kind

    def _unsigned(self, what: str) -> None:
        if not self.allow_unsigned:
            self._refuse(
                what,
                PlanRejectedError(
                    f"node {self.node_id} refuses an unsigned {what}: it has no orchestrator_public_key "
                    "(set it, or allow_unsigned_plans for development)"
                ),
            )

    def _handle(
        self, what: str, payload: bytes, signature: bytes, kinds: tuple[MessageKind, ...], epoch: int | None
    ) -> Applied:
        assert self.gate is not None and self._key is not None
        try:
            if not signature:
                raise PlanRejectedError(f"unsigned {what}: this node only accepts signed control messages")
            signed = SignedMessage(payload, signature)
            message = verify(signed, self._key)  # check kind and epoch before any state changes
            if message.kind not in kinds:
                raise PlanRejectedError(f"a signed {message.kind.value} message cannot be used as a {what}")
            if epoch is not None and message.epoch != epoch:
                raise PlanRejectedError(
                    f"{what} names epoch {epoch} but its signed message is for epoch {message.epoch}"
                )
            return self.gate.handle(signed)
        except PlanRejectedError as exc:
            self._refuse(what, exc)
            raise AssertionError("unreachable") from None

    def _refuse(self, what: str, exc: PlanRejectedError) -> None:
        log.warning("node %s refused %s: %s (serving continues on the current plan)", self.node_id, what, exc)
        raise PlanRejectedError(f"node {self.node_id}: {exc}") from exc
