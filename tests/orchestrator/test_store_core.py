"""Persistence across an orchestrator restart, the event record's JSON form, and the core's RB order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from orch_world import mec_world

from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.core import OrchestratorCore
from edgesplit.orchestrator.events import (
    Action,
    CandidateKind,
    CandidateRecord,
    DecisionEvent,
    Outcome,
    TriggerFiring,
    TriggerKind,
)
from edgesplit.orchestrator.plan_gate import PlanGate
from edgesplit.orchestrator.plans import MessageKind, Plan
from edgesplit.orchestrator.signing import generate_key
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.store import OrchestratorStore, PlanStatus, reconcile


def test_event_json_round_trip_keeps_every_field() -> None:
    event = DecisionEvent(
        at_s=12.5,
        epoch=3,
        action=Action.RECONFIGURE,
        reason="migrate on bandwidth",
        triggers=(TriggerFiring(TriggerKind.BANDWIDTH, 5e6, 50e6, "device~mec1"),),
        candidates=(
            CandidateRecord(CandidateKind.MIGRATE, ("a", "b"), True, 0.04, 0.3, True, 10, 1.5, 9.0, 2.0),
        ),
        chosen=CandidateRecord(CandidateKind.MIGRATE, ("a", "b"), True, 0.04),
        new_epoch=4,
        outcome=Outcome.COMMITTED,
        predicted_latency_s=0.04,
        measured_latency_s=0.045,
        phases={"planning": 0.01, "prepare": 2.0, "commit": 0.1},
        event_id=7,
    )
    wire = json.loads(json.dumps(event.to_dict()))
    assert wire["triggers"][0] == {
        "kind": "bandwidth",
        "value": 5e6,
        "threshold": 50e6,
        "subject": "device~mec1",
    }
    assert DecisionEvent.from_dict(wire) == event


def test_store_keeps_plans_epochs_and_events_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "orch.sqlite"
    store = OrchestratorStore(path)
    store.record_plan(Plan(1, ("a", "b")), PlanStatus.COMMITTED, 1.0)
    store.record_plan(Plan(2, ("b", "b")), PlanStatus.ISSUED, 2.0)
    store.set_status(2, PlanStatus.ABORTED, 3.0)
    first = store.append(DecisionEvent(1.0, 1, Action.KEEP, "no trigger"))
    store.update(DecisionEvent(1.0, 1, Action.KEEP, "updated", event_id=first))
    store.append(DecisionEvent(2.0, 1, Action.RECONFIGURE, "x", new_epoch=2))
    store.close()

    again = OrchestratorStore(path)
    current = again.current_plan()
    assert current is not None and current.plan == Plan(1, ("a", "b"))
    assert again.highest_epoch() == 2  # the aborted epoch is burnt, never reused
    events = again.events()
    assert [e.reason for e in events] == ["updated", "x"] and events[0].event_id == first
    assert [e.reason for e in again.events(after_id=first)] == ["x"]
    with pytest.raises(KeyError):
        again.set_status(9, PlanStatus.COMMITTED, 0.0)


def test_reconcile_adopts_what_the_nodes_serve(tmp_path: Path) -> None:
    store = OrchestratorStore(tmp_path / "s.sqlite")
    store.record_plan(Plan(1, ("a", "b")), PlanStatus.COMMITTED, 1.0)
    store.record_plan(Plan(2, ("a", "c")), PlanStatus.ISSUED, 2.0)  # crashed after commit, before the write
    rec = reconcile(store, {"a": 2, "c": 2, "b": 1})
    assert rec.plan == Plan(2, ("a", "c")) and rec.next_epoch == 3 and not rec.needs_deploy
    assert store.current_plan().plan.epoch == 2  # type: ignore[union-attr]
    # Nodes disagree with every stored plan: deploy afresh, above any epoch anyone has seen.
    rec = reconcile(store, {"a": 9, "c": 2, "b": 9})
    assert rec.needs_deploy and rec.next_epoch == 10


def _core(tmp_path: Path) -> tuple[OrchestratorCore, AdaptiveController, OrchestratorStore]:
    world = mec_world(seed=21)
    store = OrchestratorStore(tmp_path / "o.sqlite")
    sr = SplitRevision()
    ctrl = AdaptiveController(world.blocks, world.facts(), sr.plan, sr.evaluate, store)
    return OrchestratorCore(ctrl, store, KEY), ctrl, store


KEY = generate_key()


def test_core_rollout_messages_pass_a_node_gate_and_restart_continues_the_epoch(tmp_path: Path) -> None:
    world = mec_world(seed=21)
    core, ctrl, store = _core(tmp_path)
    gate = PlanGate(KEY.public_key())

    # First start: nothing stored, nodes report nothing -> plan d_0, prepare is signed and stored first.
    step = core.start(-100.0, {}, world.measure(None))
    assert step.message is not None and step.plan is not None and step.plan.epoch == 1
    assert store.plan(1).status is PlanStatus.ISSUED  # type: ignore[union-attr]
    assert gate.handle(step.message).kind is MessageKind.PREPARE
    gate.handle(core.commit_message(1))
    done = core.committed(1, -99.0, prepare_s=0.5, commit_s=0.05)
    assert done.event.outcome is Outcome.COMMITTED and done.event.phases["prepare"] == 0.5
    assert done.message is None  # nothing to release after the first plan

    # A bandwidth collapse: epoch 2 goes out, and the superseded epoch 1 is released.
    world.links[("device", "mec1")].bandwidth_bps = 5e6
    step2 = None
    for t in range(1, 10):
        step2 = core.tick(float(t), world.measure(ctrl.plan))
        if step2.message is not None:
            break
    assert (
        step2 is not None and step2.message is not None and step2.plan is not None and step2.plan.epoch == 2
    )
    gate.handle(step2.message)
    gate.handle(core.commit_message(2))
    release = core.committed(2, 10.0, 1.0, 0.1).message
    assert release is not None and gate.handle(release).epoch == 1
    store.close()

    # Restart: a new core on the same file; the nodes say they serve epoch 2 -> adopt, no redeploy.
    core2, ctrl2, store2 = _core(tmp_path)
    served = {n: 2 for n in step2.plan.nodes}
    again = core2.start(11.0, served, world.measure(None))
    assert again.message is None and ctrl2.plan == step2.plan and "adopted epoch 2" in again.event.reason
    # The next change continues the epoch sequence.
    world.links[("device", "mec1")].bandwidth_bps = 400e6
    world.links[("device", "mec2")].bandwidth_bps = 5e6
    step3 = None
    for t in range(12, 30):
        step3 = core2.tick(float(t), world.measure(ctrl2.plan))
        if step3.message is not None:
            break
    assert step3 is not None and step3.plan is not None and step3.plan.epoch == 3
    assert gate.handle(step3.message).epoch == 3  # type: ignore[arg-type]
    # An abort burns epoch 3 and is accepted by the node.
    abort = core2.aborted(3, 31.0, frozenset({"mec1"}), prepare_s=2.0).message
    assert abort is not None and gate.handle(abort).kind is MessageKind.ABORT
    assert store2.highest_epoch() == 3 and store2.current_plan().plan.epoch == 2  # type: ignore[union-attr]
    kinds = [(e.action, e.outcome) for e in store2.events()]
    assert (Action.RECONFIGURE, Outcome.ABORTED) in kinds and (Action.RECONFIGURE, Outcome.COMMITTED) in kinds
