"""The adaptive orchestrator's decision loop (Algorithm 1): triggers → migrate or re-split → guards.

Owns the current plan, the epoch counter, the cool-down and the lifecycle. Time comes in as ``now``
and the planner is injected, so the controller runs identically under a fake clock, the simulator and
the ``edgesplit orchestrator`` process. Signing and broadcasting are the caller's job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from edgesplit.orchestrator.candidates import EvaluateFn, Guard, PlanFn, Problem, choose, predicted
from edgesplit.orchestrator.controller_settings import (
    ALLOWED_TRANSITIONS,
    ControllerSettings,
    ControllerState,
    EventSink,
    IllegalTransitionError,
    MonitoringInputs,
)
from edgesplit.orchestrator.events import (
    Action,
    CandidateKind,
    CandidateRecord,
    DecisionEvent,
    Outcome,
    TriggerFiring,
    TriggerKind,
)
from edgesplit.orchestrator.move_cost import holdings
from edgesplit.orchestrator.plans import Plan, boundaries_of
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts, build_problem
from edgesplit.orchestrator.profiler import (
    CapacityProfiler,
    EnvironmentState,
)
from edgesplit.orchestrator.triggers import (
    PlanView,
    TriggerState,
    active_links,
    should_reconfigure,
)


@dataclass(frozen=True)
class _Rollout:
    plan: Plan
    event: DecisionEvent


class AdaptiveController:
    """Algorithm 1 as one ``tick(now, inputs)`` per monitoring cycle Δt."""

    def __init__(
        self,
        blocks: Sequence[BlockCost],
        facts: ClusterFacts,
        plan_fn: PlanFn,
        evaluate_fn: EvaluateFn,
        sink: EventSink,
        settings: ControllerSettings | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.blocks = tuple(blocks)
        self.facts = facts
        self.settings = settings or ControllerSettings()
        reference = {i: b.decode_s for i, b in enumerate(self.blocks)}
        self.profiler = CapacityProfiler(reference, self.settings.profiler)
        self._plan_fn = plan_fn
        self._evaluate = evaluate_fn
        self._sink = sink
        self._timer = timer
        self.state = ControllerState.CREATED
        self.plan: Plan | None = None
        self.highest_epoch = 0
        self.last_change_s = -math.inf
        self._last_plan_s = -math.inf
        self._planned_hop_s = 0.0  # the plan's hop time at the last planning round
        self._first_tick_s = math.inf
        self._unresolved: frozenset[tuple[TriggerKind, str]] = frozenset()
        self._triggers = TriggerState()
        self._failed: dict[str, float] = {}
        self._rollout: _Rollout | None = None
        self._measuring: tuple[int, float, DecisionEvent] | None = None
        self._view = PlanView(
            (),
            facts.source,
            {n.node_id: n.trusted for n in facts.nodes},
            frozenset(i for i, b in enumerate(self.blocks) if b.privacy),
        )

    def _move_to(self, new: ControllerState) -> None:
        if new not in ALLOWED_TRANSITIONS[self.state]:
            raise IllegalTransitionError(f"controller cannot go from {self.state.value} to {new.value}")
        self.state = new

    # ---- lifecycle -------------------------------------------------------------------------------

    def adopt(self, plan: Plan, highest_epoch: int | None = None) -> None:
        """Continue with a plan already serving (restart: the stored plan or what the nodes report)."""
        self._move_to(ControllerState.RUNNING)
        self.plan = plan
        self.highest_epoch = max(plan.epoch, highest_epoch or 0)
        self._view = replace(self._view, assignment=plan.assignment)
        self.profiler.on_epoch_committed(plan.epoch)

    def bootstrap(self, now: float, inputs: MonitoringInputs = MonitoringInputs()) -> DecisionEvent:
        """Algorithm 1's initial deployment: plan from scratch on what has been measured so far."""
        if self.state is not ControllerState.CREATED:
            raise IllegalTransitionError(f"bootstrap only from created, not {self.state.value}")
        env = self._ingest(now, inputs)
        problem = self._problem(env, inputs, self._dead(now, env))
        started = self._timer()
        assignment = self._plan_fn(problem, None, (), self._held(env, problem, ()))
        planning_s = self._timer() - started
        if assignment is None:
            event = DecisionEvent(
                now, 0, Action.KEEP, "no feasible initial plan", phases={"planning": planning_s}
            )
            return self._record(event)
        chosen = predicted(
            CandidateKind.RESPLIT, assignment, self._evaluate(problem, assignment), self.settings.thresholds
        )
        event = self._begin_rollout(now, (), [chosen], chosen, "initial deployment", planning_s)
        # T_cool spaces reconfigurations of a serving plan; the first deployment is not one of them, so
        # a disturbance in the first T_cool after start-up is answered as promptly as any later one.
        self.last_change_s = self._last_committed_change_s = -math.inf
        return event

    def stop(self) -> None:
        self._move_to(ControllerState.STOPPED)

    def on_committed(
        self, epoch: int, now: float, prepare_s: float = 0.0, commit_s: float = 0.0
    ) -> DecisionEvent:
        """The broadcaster committed ``epoch`` on every node: it is now the plan."""
        rollout = self._expect_rollout(epoch)
        self._move_to(ControllerState.RUNNING)
        self.plan = rollout.plan
        self._view = replace(self._view, assignment=rollout.plan.assignment)
        self.profiler.on_epoch_committed(epoch)
        self._rollout = None
        event = self._finish(rollout, Outcome.COMMITTED, prepare_s, commit_s)
        self._measuring = (epoch, now + self.settings.settle_s, event)
        return event

    def on_aborted(
        self, epoch: int, now: float, failed_nodes: frozenset[str] = frozenset(), prepare_s: float = 0.0
    ) -> DecisionEvent:
        """Prepare failed or timed out: stay on the old plan, leave the failed nodes out for a while."""
        rollout = self._expect_rollout(epoch)
        self._move_to(ControllerState.RUNNING)
        self._rollout = None
        for node in failed_nodes:
            self._failed[node] = now
        # A failed attempt is not a change: do not let it hold back the retry by the cool-down.
        self.last_change_s = self._last_committed_change_s
        return self._finish(rollout, Outcome.ABORTED, prepare_s, 0.0)

    def _expect_rollout(self, epoch: int) -> _Rollout:
        if self._rollout is None or self._rollout.plan.epoch != epoch:
            pending = None if self._rollout is None else self._rollout.plan.epoch
            raise IllegalTransitionError(f"epoch {epoch} is not being rolled out (pending: {pending})")
        return self._rollout

    def _finish(
        self, rollout: _Rollout, outcome: Outcome, prepare_s: float, commit_s: float
    ) -> DecisionEvent:
        base = rollout.event
        event = replace(
            base, outcome=outcome, phases={**base.phases, "prepare": prepare_s, "commit": commit_s}
        )
        self._sink.update(event)
        return event

    # ---- the loop body ---------------------------------------------------------------------------

    def tick(self, now: float, inputs: MonitoringInputs = MonitoringInputs()) -> DecisionEvent:
        """One monitoring cycle. Returns the decision; notable ones (a trigger or a change) are logged."""
        # 1) Collect what arrived and update the capacity profiles: E(t).
        env = self._env = self._ingest(now, inputs)
        self._record_measured_latency(now, env)
        if self.state is not ControllerState.RUNNING or self.plan is None:
            return DecisionEvent(now, self.highest_epoch, Action.KEEP, f"controller is {self.state.value}")
        plan, dead, th = self.plan, self._dead(now, env), self.settings.thresholds

        # 2) ShouldReconfigure(E(t), Θ), with hysteresis state carried between cycles.
        decision = should_reconfigure(
            env, th, self._view, self._triggers, inputs.pending_privacy_high, dead, self.settings.hysteresis
        )
        self._triggers, triggers = decision.state, decision.firing
        if not decision.reconfigure:
            if not self._improvement_due(now):
                return DecisionEvent(now, plan.epoch, Action.KEEP, "no trigger")
            since = now - max(self._last_plan_s, self.last_change_s)
            triggers = (
                TriggerFiring(TriggerKind.IMPROVEMENT, since, self.settings.improvement_interval_s or 0),
            )

        # 3) Rate limits: cool-down since the last change; no re-planning every cycle while a trigger
        #    stays active. Privacy violations and node loss skip both. Deferrals are logged once.
        if not decision.urgent and now - self.last_change_s < th.cooldown_s:
            left = th.cooldown_s - (now - self.last_change_s)
            event = DecisionEvent(now, plan.epoch, Action.KEEP, f"cool-down: {left:.1f} s left", triggers)
            return self._record(event) if decision.newly_fired else event
        improving = triggers[0].kind is TriggerKind.IMPROVEMENT
        recently = now - self._last_plan_s < self.settings.replan_interval_s
        hop_s = self._hop_time_s(env, plan.assignment)
        if hop_s > 2 * self._planned_hop_s + 0.25 * th.latency_max_s:
            recently = False  # the plan's links got much slower since the last planning: news
        if self._confirming is not None and now - self._confirming[1] >= self.settings.confirm_s:
            recently = False  # a choice awaits its confirmation: plan again now
        urgent_set = frozenset((f.kind, f.subject) for f in triggers if f.kind.urgent)
        # An urgent situation the last planning could not resolve is retried at the re-plan pace,
        # unless it changed (another node lost): the planner is not free, and the answer would repeat.
        # The improvement check is paced by its own interval (``_improvement_due``), not this one.
        stuck = decision.urgent and urgent_set == self._unresolved
        if recently and not improving and (stuck or (not decision.urgent and not decision.newly_fired)):
            return DecisionEvent(
                now, plan.epoch, Action.KEEP, "trigger still active, planned recently", triggers
            )

        # 4) Plan: migration only (current cut points) first; re-split if that misses constraints or targets.
        self._last_plan_s, self._planned_hop_s, started = now, hop_s, self._timer()
        problem = self._problem(env, inputs, dead)
        keep = self._candidate(CandidateKind.KEEP, problem, plan.assignment, dead)
        options = self._solve(CandidateKind.MIGRATE, problem, boundaries_of(plan.assignment), dead)
        if not options or not options[0].meets_targets:
            options += self._solve(CandidateKind.RESPLIT, problem, None, dead)
        planning_s = self._timer() - started

        # 5) Guards: is it a change, and does its gain over the horizon pay for moving? Then roll out.
        min_gain = self.settings.improvement_min_gain if improving else self.settings.min_relative_gain
        guard = Guard(self.blocks, plan.assignment, self.settings.move, decision.urgent, min_gain)
        judged = [guard.judge(c, keep, env, problem) for c in options]
        chosen = choose(judged)
        self._unresolved = urgent_set if chosen is None else frozenset()
        noisy_only = (
            not decision.urgent
            and {f.kind for f in triggers} <= {TriggerKind.LATENCY, TriggerKind.IMPROVEMENT}
            # A violation the probed links alone explain (a link's RTT jumped, seen by the median of
            # every probe) is not noise to confirm.
            and hop_s <= self.settings.thresholds.latency_max_s
        )
        if chosen is not None and noisy_only:
            confirmed = (
                self._confirming is not None
                and self._confirming[0] == chosen.assignment
                and now - self._confirming[1] <= 4 * self.settings.confirm_s + self.settings.replan_interval_s
            )
            if not confirmed:
                self._confirming = (chosen.assignment, now)
                event = DecisionEvent(
                    now,
                    plan.epoch,
                    Action.KEEP,
                    f"{chosen.kind.value} chosen; confirming it in {self.settings.confirm_s:g} s "
                    "(a latency-only or improvement change must see the same answer twice)",
                    triggers,
                    (keep, *judged),
                    predicted_latency_s=keep.predicted_latency_s,
                    phases={"planning": planning_s},
                )
                return self._record(event)
        self._confirming = None
        if chosen is None:
            reason = "; ".join(f"{c.kind.value}: {c.note}" for c in judged) or "no feasible plan found"
            return self._record(
                DecisionEvent(
                    now,
                    plan.epoch,
                    Action.KEEP,
                    reason,
                    triggers,
                    (keep, *judged),
                    predicted_latency_s=keep.predicted_latency_s,
                    phases={"planning": planning_s},
                )
            )
        reason = f"{chosen.kind.value} on {', '.join(f.kind.value for f in triggers)}"
        return self._begin_rollout(now, triggers, [keep, *judged], chosen, reason, planning_s)

    # ---- pieces ----------------------------------------------------------------------------------

    def _ingest(self, now: float, inputs: MonitoringInputs) -> EnvironmentState:
        if self._first_tick_s == math.inf:
            self._first_tick_s = now
        for report in inputs.reports:
            self.profiler.add_node_report(report, now)
        for obs in inputs.links:
            self.profiler.add_link_observation(obs, now)
        for lat in inputs.latencies:
            self.profiler.add_latency(lat)
        if inputs.workload is not None:
            self.profiler.set_workload(inputs.workload)
        for node in inputs.failed_nodes:
            self._failed[node] = now
        return self.profiler.snapshot(now)

    def _dead(self, now: float, env: EnvironmentState) -> frozenset[str]:
        known = {n.node_id for n in self.facts.nodes}
        silent = env.dead_nodes(now, self.settings.heartbeat_timeout_s)
        # A declared node that has not reported within a heartbeat timeout of our own start is absent
        # (not before: after a restart, reports trickle in over the first cycle).
        waited = now - self._first_tick_s >= self.settings.heartbeat_timeout_s
        never = {n for n in known if n not in env.nodes} if waited else set()
        failed = {n for n, at in self._failed.items() if now - at < self.settings.failed_node_exclusion_s}
        return frozenset((silent | never | failed) & known)

    def _problem(self, env: EnvironmentState, inputs: MonitoringInputs, dead: frozenset[str]) -> Problem:
        mode: Literal["high", "none"] = (
            "high" if inputs.pending_privacy_high > 0 else self.settings.privacy_default
        )
        return build_problem(env, self.blocks, self.facts, privacy=mode, exclude=dead)

    def _candidate(
        self, kind: CandidateKind, problem: Problem, assignment: tuple[str, ...], dead: frozenset[str]
    ) -> CandidateRecord:
        if set(assignment) & dead:
            return CandidateRecord(kind, assignment, False, note="uses a lost node")
        return predicted(kind, assignment, self._evaluate(problem, assignment), self.settings.thresholds)

    def _hop_time_s(self, env: EnvironmentState, assignment: Sequence[str]) -> float:
        """What one step spends on the plan's hops by the probed RTTs alone (one way each)."""
        one_way_s = 0.0
        for a, b in active_links(assignment, self._view.source):
            link = env.link(a, b)
            if link is not None and link.rtt_s is not None:
                one_way_s += link.rtt_s / 2
        return one_way_s

    def _improvement_due(self, now: float) -> bool:
        interval = self.settings.improvement_interval_s
        if interval is None:
            return False
        if self._confirming is not None and now - self._confirming[1] >= self.settings.confirm_s:
            return True  # an improvement found last time awaits its confirmation
        quiet_since = max(self._last_plan_s, self.last_change_s, self._first_tick_s)
        return (
            now - quiet_since >= interval and now - self.last_change_s >= self.settings.thresholds.cooldown_s
        )

    @staticmethod
    def _held(env: EnvironmentState, problem: Problem, current: tuple[str, ...]) -> dict[str, frozenset[int]]:
        return {str(n["id"]): holdings(env, current, str(n["id"]))[1] for n in problem["nodes"]}

    def _solve(
        self, kind: CandidateKind, problem: Problem, fixed: tuple[int, ...] | None, dead: frozenset[str]
    ) -> list[CandidateRecord]:
        assert self.plan is not None
        current = self.plan.assignment
        assignment = self._plan_fn(problem, fixed, current, self._held(self._env, problem, current))
        return [] if assignment is None else [self._candidate(kind, problem, tuple(assignment), dead)]

    def _begin_rollout(
        self,
        now: float,
        triggers: tuple[TriggerFiring, ...],
        records: list[CandidateRecord],
        chosen: CandidateRecord,
        reason: str,
        planning_s: float,
    ) -> DecisionEvent:
        self._move_to(ControllerState.ROLLING_OUT)
        self.highest_epoch += 1
        new_plan = Plan(self.highest_epoch, chosen.assignment, predicted_latency_s=chosen.predicted_latency_s)
        self._last_committed_change_s = self.last_change_s
        self.last_change_s = now
        event = DecisionEvent(
            now,
            0 if self.plan is None else self.plan.epoch,
            Action.RECONFIGURE,
            reason,
            triggers,
            tuple(records),
            chosen,
            new_plan.epoch,
            predicted_latency_s=chosen.predicted_latency_s,
            phases={"planning": planning_s},
        )
        event = self._record(event)
        self._rollout = _Rollout(new_plan, event)
        return event

    @property
    def pending_plan(self) -> Plan | None:
        """The plan the caller must sign and roll out (prepare → commit), while ROLLING_OUT."""
        return None if self._rollout is None else self._rollout.plan

    def _record(self, event: DecisionEvent) -> DecisionEvent:
        return replace(event, event_id=self._sink.append(event))

    def _record_measured_latency(self, now: float, env: EnvironmentState) -> None:
        if self._measuring is None or env.latency_s is None:
            return
        epoch, due_s, event = self._measuring
        if now >= due_s and self.plan is not None and self.plan.epoch == epoch:
            self._sink.update(replace(event, measured_latency_s=env.latency_s))
            self._measuring = None

    _last_committed_change_s: float = -math.inf
    _confirming: tuple[tuple[str, ...], float] | None = None
    _env: EnvironmentState
