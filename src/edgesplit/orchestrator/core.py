"""The orchestrator's pure core as one object: controller + signing + persistence, no sockets or clock.

The ``edgesplit orchestrator`` process wraps this: it feeds measurements and ``now`` in, sends the
signed messages it gets back to the nodes, and reports how the rollout went. Order matters and is
kept here: a plan is written to the store before it is broadcast, so no epoch is ever issued twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import MonitoringInputs
from edgesplit.orchestrator.events import Action, DecisionEvent
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan
from edgesplit.orchestrator.signing import SignedMessage, sign
from edgesplit.orchestrator.store import OrchestratorStore, PlanStatus, reconcile


@dataclass(frozen=True)
class Step:
    """What one call decided, and the signed message (if any) the shell must now deliver."""

    event: DecisionEvent
    message: SignedMessage | None = None
    plan: Plan | None = None


class OrchestratorCore:
    """Algorithm 1 + Reconfiguration Broadcast bookkeeping. The controller must use ``store`` as its sink."""

    def __init__(self, controller: AdaptiveController, store: OrchestratorStore, key: Ed25519PrivateKey):
        self.controller = controller
        self.store = store
        self._key = key
        self.shard_offer: Mapping[str, Any] | None = None
        """The shard registry's offer (URL + per-block SHA-256) every signed prepare carries, if any."""
        self.shard_keys: Callable[[Plan], Mapping[str, Any]] | None = None
        """Per node, the wrapped keys of its assigned blocks (an encrypted registry), added to the offer."""

    def start(self, now: float, reported_epochs: Mapping[str, int], inputs: MonitoringInputs) -> Step:
        """After (re)start: adopt what the nodes serve (no redeploy), or plan and prepare d_0."""
        rec = reconcile(self.store, reported_epochs)
        if rec.plan is not None:
            self.controller.adopt(rec.plan, highest_epoch=rec.next_epoch - 1)
            event = DecisionEvent(
                now, rec.plan.epoch, Action.KEEP, f"adopted epoch {rec.plan.epoch}: {rec.reason}"
            )
            return Step(replace(event, event_id=self.store.append(event)), None, rec.plan)
        self.controller.highest_epoch = rec.next_epoch - 1
        return self._prepare(self.controller.bootstrap(now, inputs), now)

    def tick(self, now: float, inputs: MonitoringInputs) -> Step:
        """One monitoring cycle; when it decides to reconfigure, returns the signed prepare to send."""
        return self._prepare(self.controller.tick(now, inputs), now)

    def _prepare(self, event: DecisionEvent, now: float) -> Step:
        plan = self.controller.pending_plan
        if event.action is not Action.RECONFIGURE or plan is None:
            return Step(event)
        if self.shard_offer is not None:  # signed with the plan: nodes verify fetched shards against it
            offer = dict(self.shard_offer)
            if self.shard_keys is not None:
                offer["keys"] = dict(self.shard_keys(plan))
            plan = replace(plan, meta={**plan.meta, "shards": offer})
        message = sign(ControlMessage(MessageKind.PREPARE, plan.epoch, plan), self._key)
        self.store.record_plan(plan, PlanStatus.ISSUED, now, message)
        return Step(event, message, plan)

    def commit_message(self, epoch: int) -> SignedMessage:
        """To send once every node answered ready to the prepare of ``epoch``."""
        return sign(ControlMessage(MessageKind.COMMIT, epoch), self._key)

    def committed(self, epoch: int, now: float, prepare_s: float, commit_s: float) -> Step:
        """Every node committed: record it; returns the release of the superseded epoch (if any)."""
        old = self.controller.plan
        self.store.set_status(epoch, PlanStatus.COMMITTED, now)
        event = self.controller.on_committed(epoch, now, prepare_s, commit_s)
        release = None if old is None else sign(ControlMessage(MessageKind.RELEASE, old.epoch), self._key)
        return Step(event, release, self.controller.plan)

    def aborted(self, epoch: int, now: float, failed_nodes: frozenset[str], prepare_s: float) -> Step:
        """Prepare failed or timed out: the epoch is burnt; returns the abort to send to every node."""
        self.store.set_status(epoch, PlanStatus.ABORTED, now)
        event = self.controller.on_aborted(epoch, now, failed_nodes, prepare_s)
        return Step(event, sign(ControlMessage(MessageKind.ABORT, epoch), self._key), self.controller.plan)
