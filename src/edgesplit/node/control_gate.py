"""The node's side of signed plans (DESIGN §4.6): every control RPC passes ``PlanGate`` before it acts.

Decides and logs refusals only; loading and freeing segments stay in ``NodeService``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edgesplit.errors import ConfigError, PlanRejectedError
from edgesplit.node.config import NodeConfig
from edgesplit.node.shard_cache import ShardOffer
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

    def __init__(
        self,
        node_id: str,
        public_key_text: str | None,
        allow_unsigned: bool,
        epoch_file: Path | None = None,
    ) -> None:
        self.node_id = node_id
        self._key = None if public_key_text is None else public_key_from_text(public_key_text)
        self._epoch_file = epoch_file
        highest = read_highest_epoch(epoch_file)
        self.gate = None if self._key is None else PlanGate(self._key, highest_seen=highest)
        self.allow_unsigned = allow_unsigned
        self.offer: ShardOffer | None = None
        """The shard registry and SHA-256s named by the last accepted signed prepare."""

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
        write_highest_epoch(self._epoch_file, applied.epoch)
        self.offer = ShardOffer.from_meta(applied.plan.meta, self.node_id)
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


def read_highest_epoch(path: Path | None) -> int:
    """The newest epoch this node accepted before a restart (0 when none was recorded)."""
    if path is None:
        return 0
    try:
        return max(0, int(path.read_text().strip() or 0))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the node's epoch record {path}: {exc}; delete it only if no "
            "old plan can be replayed to this node"
        ) from exc


def write_highest_epoch(path: Path | None, epoch: int) -> None:
    """Persist before acting, atomically: a replayed older plan is refused after a restart too."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{epoch}\n")
    os.replace(tmp, path)


def epoch_file_of(config: NodeConfig) -> Path | None:
    """``highest_epoch`` in the node's state folder (or its shard cache); None keeps it in memory only."""
    folder = config.state_dir or config.shard_cache
    return None if folder is None else folder / "highest_epoch"
