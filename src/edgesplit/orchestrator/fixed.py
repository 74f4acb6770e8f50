"""A controller that never changes its plan: the evaluation's static baselines (`--frozen`, `--pin-plan`).

It deploys either a given assignment or the planner's optimum for what it knows at start, then only
monitors. "Static" means the same assignment for ever: a plan node that comes back empty after a
restart is given the same assignment again (a new epoch, as an operator's static deployment would
reload it), but nothing ever moves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgesplit.orchestrator.candidates import EvaluateFn, PlanFn, Problem, predicted
from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import (
    ControllerSettings,
    ControllerState,
    EventSink,
    MonitoringInputs,
)
from edgesplit.orchestrator.events import Action, CandidateKind, DecisionEvent
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts
from edgesplit.orchestrator.profiler import EnvironmentState

EnvHook = Callable[[EnvironmentState, float], EnvironmentState]
"""Replaces the measured E(t) (e.g. the evaluation's oracle); identity when absent."""

#: After a commit, nodes' reports may still show the old epoch for a cycle or two.
_SETTLE_S = 3.0


class FixedController(AdaptiveController):
    """Algorithm 1 with every reconfiguration switched off; ``pinned`` skips the planner at deployment."""

    def __init__(
        self,
        blocks: Sequence[BlockCost],
        facts: ClusterFacts,
        plan_fn: PlanFn,
        evaluate_fn: EvaluateFn,
        sink: EventSink,
        settings: ControllerSettings | None = None,
        *,
        pinned: Sequence[str] | None = None,
        env_hook: EnvHook | None = None,
    ) -> None:
        if pinned is not None:
            assignment = tuple(pinned)
            if len(assignment) != len(blocks):
                raise ValueError(f"the pinned plan has {len(assignment)} blocks, the model {len(blocks)}")
            unknown = sorted(set(assignment) - {n.node_id for n in facts.nodes})
            if unknown:
                raise ValueError(f"the pinned plan names unknown node(s) {', '.join(unknown)}")

            def fixed_plan(
                problem: Problem,
                fixed_boundaries: tuple[int, ...] | None,
                current: tuple[str, ...],
                held: Mapping[str, frozenset[int]],
            ) -> tuple[str, ...] | None:
                return assignment

            plan_fn = fixed_plan
        super().__init__(blocks, facts, plan_fn, evaluate_fn, sink, settings)
        self._env_hook = env_hook
        self._committed_at = -1e18

    def _ingest(self, now: float, inputs: MonitoringInputs) -> EnvironmentState:
        env = super()._ingest(now, inputs)
        return env if self._env_hook is None else self._env_hook(env, now)

    def on_committed(self, epoch: int, now: float, prepare_s: float = 0.0, commit_s: float = 0.0) -> Any:
        self._committed_at = now
        return super().on_committed(epoch, now, prepare_s, commit_s)

    def tick(self, now: float, inputs: MonitoringInputs = MonitoringInputs()) -> DecisionEvent:
        """Monitor only; re-send the same assignment to a plan node that restarted empty."""
        env = self._env = self._ingest(now, inputs)
        self._record_measured_latency(now, env)
        if self.state is not ControllerState.RUNNING or self.plan is None:
            return DecisionEvent(now, self.highest_epoch, Action.KEEP, f"controller is {self.state.value}")
        plan = self.plan
        if now - self._committed_at < _SETTLE_S:
            return DecisionEvent(now, plan.epoch, Action.KEEP, "static plan")
        silent = env.dead_nodes(now, self.settings.heartbeat_timeout_s)
        restarted = sorted(
            n
            for n in plan.nodes
            if n in env.nodes
            and n not in silent
            and env.nodes[n].epoch == 0
            and env.nodes[n].last_report_s > self._committed_at + _SETTLE_S
        )
        if not restarted:
            return DecisionEvent(now, plan.epoch, Action.KEEP, "static plan")
        problem = self._problem(env, inputs, frozenset())
        same = predicted(
            CandidateKind.KEEP,
            plan.assignment,
            self._evaluate(problem, plan.assignment),
            self.settings.thresholds,
        )
        reason = f"static plan re-deployed on restarted {', '.join(restarted)}"
        return self._begin_rollout(now, (), [same], same, reason, 0.0)
