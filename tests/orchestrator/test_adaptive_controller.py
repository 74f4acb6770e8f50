"""Algorithm 1 under a fake clock on a simulated cluster: the scenarios of issue 5, without processes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from orch_world import MB, RunLog, World, make_controller, mec_world, run, start

from edgesplit.orchestrator.controller_settings import (
    ControllerSettings,
    ControllerState,
    IllegalTransitionError,
)
from edgesplit.orchestrator.events import Action, CandidateKind, Outcome, TriggerKind
from edgesplit.orchestrator.plans import boundaries_of
from edgesplit.orchestrator.triggers import Thresholds


def _middle_node(assignment: tuple[str, ...]) -> str:
    return assignment[len(assignment) // 2]


def test_initial_plan_offloads_middle_layers_to_the_closest_fast_node() -> None:
    world = mec_world()
    ctrl, _ = make_controller(world)
    plan = start(ctrl, world)
    # Independent reason: MEC nodes are 4x faster and mec1 has the lower RTT; privacy "high" (the
    # default) pins embedding, first layer and head to the trusted device.
    assert _middle_node(plan.assignment) == "mec1"
    assert [plan.assignment[b] for b in (0, 1, 5)] == ["device"] * 3
    assert ctrl.state is ControllerState.RUNNING and plan.epoch == 1


@pytest.mark.parametrize("planner", ["real", "brute"])
def test_bandwidth_collapse_migrates_the_middle_segment_within_seconds(planner: str) -> None:
    world = mec_world(noise=0.03, seed=1)
    ctrl, sink = make_controller(world, planner=planner)
    plan = start(ctrl, world)
    before = world.true_latency_s(plan.assignment)

    def collapse(t: float) -> None:
        if t == 40.0:  # after the initial deployment's cool-down
            world.links[("device", "mec1")].bandwidth_bps = 5e6

    log = run(ctrl, world, 1.0, 60.0, on_tick=collapse)
    assert len(log.changes) == 1, [e.reason for e in log.changes]
    change = log.changes[0]
    assert 40.0 < change.at_s <= 45.0  # "within a few seconds"
    assert TriggerKind.BANDWIDTH in {t.kind for t in change.triggers}
    bw = next(t for t in change.triggers if t.kind is TriggerKind.BANDWIDTH)
    assert bw.value < 50e6 and bw.threshold == 50e6 and bw.subject == "device~mec1"
    assert change.chosen is not None and change.chosen.kind is CandidateKind.MIGRATE
    new = ctrl.plan
    assert new is not None and new.epoch == 2
    assert boundaries_of(new.assignment) == boundaries_of(plan.assignment)  # migration: same cuts
    assert _middle_node(new.assignment) == "mec2"
    collapsed = world.true_latency_s(plan.assignment)
    assert world.true_latency_s(new.assignment) < collapsed
    assert world.true_latency_s(new.assignment) < 1.5 * before
    # The decision was logged with its candidates, and committed.
    logged = [e for e in sink.events if e.action is Action.RECONFIGURE and e.new_epoch == 2]
    assert logged and logged[0].outcome is Outcome.COMMITTED
    assert {c.kind for c in logged[0].candidates} >= {CandidateKind.KEEP, CandidateKind.MIGRATE}


def test_a_collapse_right_after_start_up_is_not_held_by_a_cool_down() -> None:
    # T_cool spaces reconfigurations (Algorithm 1's t - t_last); the initial deployment is not one,
    # so a collapse 5 s after start-up moves the plan as promptly as one at 40 s does above.
    world = mec_world(noise=0.03, seed=1)
    ctrl, _ = make_controller(world)
    plan = start(ctrl, world, at_s=0.0)  # deployed at t = 0: the old reading held changes until 30 s
    assert ctrl.settings.thresholds.cooldown_s >= 30.0

    def collapse(t: float) -> None:
        if t == 5.0:
            world.links[("device", "mec1")].bandwidth_bps = 5e6

    log = run(ctrl, world, 1.0, 20.0, on_tick=collapse)
    assert len(log.changes) == 1, [e.reason for e in log.changes]
    assert 5.0 < log.changes[0].at_s <= 10.0
    assert ctrl.plan is not None and _middle_node(ctrl.plan.assignment) != _middle_node(plan.assignment)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_steady_noisy_conditions_cause_no_reconfiguration_in_five_minutes(seed: int) -> None:
    # Ordinary measurement noise (10 % gaussian on every figure, 2 % wild outliers x0.2 / x5).
    world = mec_world(noise=0.10, outlier_rate=0.02, seed=seed)
    ctrl, _ = make_controller(world)
    start(ctrl, world)
    log = run(ctrl, world, 1.0, 301.0)
    assert log.changes == [], [e.reason for e in log.changes]
    assert ctrl.plan is not None and ctrl.plan.epoch == 1


def test_oscillating_overload_is_rate_limited_and_does_not_flap() -> None:
    world = mec_world(noise=0.05, seed=7)
    ctrl, _ = make_controller(world)
    start(ctrl, world)
    cooldown = Thresholds().cooldown_s

    def oscillate(t: float) -> None:
        # Anti-phase 20 s square waves: mec1 overloaded while mec2 is idle, then the other way round.
        phase = int(t // 20) % 2
        world.nodes["mec1"].background = 0.95 if phase == 0 else 0.05
        world.nodes["mec2"].background = 0.05 if phase == 0 else 0.95

    log = run(ctrl, world, 1.0, 121.0, on_tick=oscillate)
    times = [e.at_s for e in log.changes]
    assert len(times) >= 1  # it did move off the overloaded node
    assert len(times) <= 120 / cooldown + 1
    assert all(b - a >= cooldown for a, b in itertools.pairwise(times)), times
    first = log.changes[0]
    assert TriggerKind.UTILIZATION in {t.kind for t in first.triggers}
    assert first.chosen is not None and "mec1" not in first.chosen.assignment[1:-1]


def test_overloaded_node_gets_segments_back_only_after_cooldown() -> None:
    world = mec_world(noise=0.02, seed=8)
    ctrl, _ = make_controller(world)
    start(ctrl, world)
    world.nodes["mec1"].background = 0.95
    log = run(ctrl, world, 1.0, 10.0)
    assert len(log.changes) == 1 and _middle_node(ctrl.plan.assignment) == "mec2"  # type: ignore[union-attr]
    moved_at = log.changes[0].at_s
    # Now mec2 degrades and mec1 recovers at once: mec1 is better again, but only after T_cool.
    world.nodes["mec1"].background = 0.05
    world.nodes["mec2"].background = 0.95
    log = run(ctrl, world, 10.0, 60.0, log=RunLog())
    assert len(log.changes) == 1
    assert log.changes[0].at_s >= moved_at + Thresholds().cooldown_s
    assert any("cool-down" in e.reason for e in log.decisions)
    assert _middle_node(ctrl.plan.assignment) == "mec1"  # type: ignore[union-attr]


def test_privacy_high_request_on_violating_route_acts_at_once_inside_cooldown() -> None:
    world = mec_world(seed=9)
    world.nodes["device"].speed = 0.1  # so slow that, for privacy "none", even the embedding leaves it
    ctrl, _ = make_controller(world, ControllerSettings(privacy_default="none"))
    plan = start(ctrl, world)
    trusted = {"device"}
    assert any(plan.assignment[b] not in trusted for b in (0, 1, len(plan.assignment) - 1))
    log = run(ctrl, world, 1.0, 6.0, pending_privacy_high=lambda t: 1 if t >= 3.0 else 0)
    assert len(log.changes) == 1
    change = log.changes[0]
    assert change.at_s == 3.0  # first cycle the request is pending; cool-down (30 s) ignored
    assert [t.kind for t in change.triggers] == [TriggerKind.PRIVACY]
    new = ctrl.plan
    assert new is not None
    for b in (0, 1, len(new.assignment) - 1):  # embedding, first layer, head
        assert new.assignment[b] in trusted


def test_node_loss_acts_at_once_and_plans_around_the_dead_node() -> None:
    world = mec_world(seed=10)
    ctrl, _ = make_controller(world, ControllerSettings(heartbeat_timeout_s=3.0))
    start(ctrl, world)
    log = run(ctrl, world, 1.0, 5.0)
    assert log.changes == []
    world.nodes["mec1"].alive = False
    log = run(ctrl, world, 5.0, 12.0)
    assert len(log.changes) == 1
    change = log.changes[0]
    assert change.at_s <= 5.0 + 3.0 + 1.0  # first cycle after the heartbeat timeout
    assert TriggerKind.NODE_LOSS in {t.kind for t in change.triggers}
    assert "mec1" not in ctrl.plan.assignment  # type: ignore[union-attr]


def test_gateway_reported_step_failure_is_node_loss_without_waiting_for_heartbeats() -> None:
    world = mec_world(seed=11)
    ctrl, _ = make_controller(world)
    start(ctrl, world)
    inputs = replace(world.measure(ctrl.plan), failed_nodes=frozenset({"mec1"}))
    ev = ctrl.tick(1.0, inputs)
    assert ev.action is Action.RECONFIGURE
    assert ev.chosen is not None and "mec1" not in ev.chosen.assignment


def _guard_world(standby: bool) -> World:
    world = mec_world(noise=0.02, seed=12)
    world.blocks = [
        replace(b, param_bytes=400 * MB) if b.name.startswith("layer") else b for b in world.blocks
    ]
    world.nodes["mec2"].standby_all = standby
    world.nodes["mec2"].fetch_bps = 50e6  # measured on its last shard download
    return world


@pytest.mark.parametrize("standby", [False, True])
def test_move_cost_guard_refuses_a_download_that_does_not_pay(standby: bool) -> None:
    world = _guard_world(standby)
    ctrl, sink = make_controller(world)
    start(ctrl, world)
    world.links[("device", "mec1")].bandwidth_bps = 5e6  # below B_min; latency still under L_max
    log = run(ctrl, world, 1.0, 30.0)
    if standby:
        # mec2 holds the shards on disk: loading them takes seconds, so the gain pays.
        assert len(log.changes) == 1 and _middle_node(ctrl.plan.assignment) == "mec2"  # type: ignore[union-attr]
        assert log.changes[0].chosen is not None and log.changes[0].chosen.move_s < 10.0
    else:
        # 3 x 400 MB at a measured 50 Mbit/s is ~190 s: longer than the 120 s horizon.
        assert log.changes == []
        refused = [e for e in sink.events if "move does not pay" in e.reason]
        assert refused, [e.reason for e in sink.events]
        mig = next(c for c in refused[0].candidates if c.kind is CandidateKind.MIGRATE)
        assert mig.move_bytes >= 3 * 400 * MB and mig.move_s > 120.0


def test_abort_keeps_the_old_plan_and_excludes_the_failed_node() -> None:
    world = mec_world(seed=13)
    ctrl, _ = make_controller(world)
    old = start(ctrl, world)
    world.links[("device", "mec1")].bandwidth_bps = 5e6
    ev = None
    for t in range(1, 10):
        ev = ctrl.tick(float(t), world.measure(ctrl.plan))
        if ev.action is Action.RECONFIGURE:
            break
    assert ev is not None and ev.action is Action.RECONFIGURE and ev.new_epoch == 2
    assert ctrl.state is ControllerState.ROLLING_OUT and ctrl.pending_plan is not None
    aborted = ctrl.on_aborted(2, ev.at_s + 1, failed_nodes=frozenset({"mec2"}), prepare_s=0.5)
    assert aborted.outcome is Outcome.ABORTED and aborted.phases["prepare"] == 0.5
    assert ctrl.plan == old and ctrl.state is ControllerState.RUNNING
    # Retry right away (an abort is not a change), with mec2 left out; epoch 2 is burnt.
    nxt = ctrl.tick(ev.at_s + 2, world.measure(ctrl.plan))
    if nxt.action is Action.RECONFIGURE:
        assert nxt.new_epoch == 3 and nxt.chosen is not None and "mec2" not in nxt.chosen.assignment
    else:
        assert "mec2" not in "".join(
            c.assignment[2] for c in nxt.candidates if c.kind is not CandidateKind.KEEP
        )


def test_lifecycle_rejects_illegal_transitions() -> None:
    world = mec_world()
    ctrl, _ = make_controller(world)
    with pytest.raises(IllegalTransitionError):
        ctrl.on_committed(1, 0.0)
    start(ctrl, world)
    with pytest.raises(IllegalTransitionError):
        ctrl.bootstrap(1.0)
    with pytest.raises(IllegalTransitionError):
        ctrl.on_committed(5, 1.0)
    ctrl.stop()
    with pytest.raises(IllegalTransitionError):
        ctrl.adopt(ctrl.plan)  # type: ignore[arg-type]
    assert ctrl.tick(2.0).reason == "controller is stopped"


def test_measured_latency_is_recorded_against_the_prediction_after_settling() -> None:
    world = mec_world(seed=14)
    ctrl, sink = make_controller(world, ControllerSettings(settle_s=3.0))
    start(ctrl, world)
    world.links[("device", "mec1")].bandwidth_bps = 5e6
    run(ctrl, world, 1.0, 20.0)
    change = next(e for e in sink.events if e.action is Action.RECONFIGURE and e.new_epoch == 2)
    assert change.predicted_latency_s is not None and change.measured_latency_s is not None
    true = world.true_latency_s(ctrl.plan.assignment)  # type: ignore[union-attr]
    assert change.measured_latency_s == pytest.approx(true, rel=0.05)
    assert change.predicted_latency_s == pytest.approx(true, rel=0.25)


@pytest.mark.parametrize("interval", [120.0, None])
def test_a_recovered_node_wins_its_segments_back_only_by_the_periodic_improvement_check(
    interval: float | None,
) -> None:
    world = mec_world(noise=0.03, seed=15)
    world.nodes["mec2"].speed = 2.0  # the fallback is clearly worse than mec1 once mec1 recovers
    ctrl, _ = make_controller(world, ControllerSettings(improvement_interval_s=interval))
    start(ctrl, world)
    world.nodes["mec1"].background = 0.95
    log = run(ctrl, world, 1.0, 10.0)
    assert len(log.changes) == 1 and _middle_node(ctrl.plan.assignment) == "mec2"  # type: ignore[union-attr]
    moved_at = log.changes[0].at_s
    world.nodes["mec1"].background = 0.05
    log = run(ctrl, world, 10.0, 200.0, log=RunLog())
    if interval is None:
        assert log.changes == []  # Algorithm 1 as printed: no trigger, no change
        return
    assert len(log.changes) == 1
    back = log.changes[0]
    assert [t.kind for t in back.triggers] == [TriggerKind.IMPROVEMENT]
    assert back.at_s >= moved_at + interval
    assert _middle_node(ctrl.plan.assignment) == "mec1"  # type: ignore[union-attr]
    assert back.chosen is not None and back.chosen.gain_s > back.chosen.cost_s


def test_the_improvement_check_keeps_its_own_pace_below_the_replan_interval() -> None:
    """An improvement interval of 3 s means a check every 3 s, not one every `replan_interval_s`
    (10 s, the pace for triggers that stay active) — and never two closer than 3 s."""
    world = mec_world(seed=18)
    settings = ControllerSettings(improvement_interval_s=3.0, replan_interval_s=10.0)
    ctrl, sink = make_controller(world, settings)
    start(ctrl, world)
    log = run(ctrl, world, 1.0, 31.0)
    assert log.changes == []  # steady: every check finds nothing better
    checks = [e.at_s for e in sink.events if [t.kind for t in e.triggers] == [TriggerKind.IMPROVEMENT]]
    assert len(checks) >= 9, checks
    assert all(b - a >= 3.0 for a, b in itertools.pairwise(checks)), checks


def test_restart_with_reports_trickling_in_neither_redeploys_nor_declares_nodes_lost() -> None:
    world = mec_world(noise=0.05, seed=16)
    first, _ = make_controller(world)
    plan = start(first, world)
    restarted, sink = make_controller(world)
    restarted.adopt(plan, highest_epoch=plan.epoch)
    partial = world.measure(plan)
    only_device = replace(partial, reports=[r for r in partial.reports if r.node_id == "device"])
    assert restarted.tick(0.0, only_device).action is Action.KEEP
    log = run(restarted, world, 1.0, 60.0)
    assert log.changes == [] and restarted.plan == plan
    assert not any(TriggerKind.NODE_LOSS in {t.kind for t in e.triggers} for e in sink.events)


def test_an_urgent_trigger_without_any_feasible_plan_is_retried_at_the_replan_pace() -> None:
    world = mec_world(seed=17)
    calls: list[float] = []
    ctrl, sink = make_controller(world, ControllerSettings(replan_interval_s=10.0))
    start(ctrl, world)
    real = ctrl._plan_fn

    def counting(*args: object) -> tuple[str, ...] | None:
        calls.append(0.0)
        return None  # e.g. no trusted node can hold the privacy-critical blocks any more

    ctrl._plan_fn = counting  # type: ignore[assignment]
    world.nodes["mec1"].alive = False
    world.nodes["mec2"].alive = False
    run(ctrl, world, 1.0, 30.0)
    lost = [e for e in sink.events if TriggerKind.NODE_LOSS in {t.kind for t in e.triggers}]
    assert lost and all(e.action is Action.KEEP for e in lost)
    assert 2 <= len(calls) <= 2 * 3  # migrate + re-split, about once per 10 s — not every cycle
    ctrl._plan_fn = real
