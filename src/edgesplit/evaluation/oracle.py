"""The evaluation's oracle: the TRUE emulated conditions, for the `oracle` bound and the `static` baseline.

This is the one place allowed to read the emulation (DESIGN §3): the harness writes what it applied
(`Truth`, a JSON file) and an orchestrator started with ``--oracle-file`` replaces its measured E(t)
with it. ``OracleController`` re-plans the moment the truth changes, with no trigger, cool-down or
net-benefit guard — the bound adaptive is measured against, not a mode to deploy.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgesplit.orchestrator.candidates import EvaluateFn, PlanFn, predicted
from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import (
    ControllerSettings,
    ControllerState,
    EventSink,
    MonitoringInputs,
)
from edgesplit.orchestrator.events import Action, CandidateKind, DecisionEvent
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts
from edgesplit.orchestrator.profiler import EnvironmentState, LinkProfile, NodeProfile, link_key


class TrueNode(BaseModel):
    """One node as the emulation really has it."""

    model_config = ConfigDict(extra="forbid")

    speed_factor: float = Field(1.0, gt=0)
    background_load: float = Field(0.0, ge=0, lt=1)
    up: bool = True


class TrueLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: str
    b: str
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)


class Truth(BaseModel):
    """What the harness applied, as of ``at_s`` seconds into the run; ``version`` grows on every change."""

    model_config = ConfigDict(extra="forbid")

    version: int = 0
    at_s: float = 0.0
    nodes: dict[str, TrueNode] = Field(default_factory=dict)
    links: list[TrueLink] = Field(default_factory=list)
    block_decode_ms: dict[int, float] = Field(default_factory=dict)
    """Per block: decode ms per step at speed factor 1 (the emulation's per-block time profile)."""

    def write(self, path: Path) -> None:
        """Atomically (a reader never sees half a file)."""
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)


class TruthSource:
    """Reads the truth file (again only when it changed) and turns it into E(t)."""

    def __init__(self, path: Path, blocks: Sequence[BlockCost]) -> None:
        self.path = path
        self.reference = [b.decode_s for b in blocks]
        self.truth: Truth | None = None
        self._stamp: tuple[int, int] | None = None

    def read(self) -> Truth | None:
        with contextlib.suppress(OSError, ValueError):
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self.truth = Truth.model_validate_json(self.path.read_text())
                self._stamp = stamp
        return self.truth

    def speed(self, node: TrueNode, measured: float | None) -> float | None:
        """The true speed relative to the blocks' reference work (what the profiler would converge to)."""
        truth = self.truth
        ref = busy = 0.0
        for b, ref_s in enumerate(self.reference):
            ms = None if truth is None else truth.block_decode_ms.get(b)
            if ref_s > 0 and ms is not None and ms > 0:
                ref += ref_s
                busy += ms / 1e3 / node.speed_factor
        return ref / busy if busy > 0 else measured

    def apply(self, env: EnvironmentState, now: float) -> EnvironmentState:
        """``env`` with every node's speed and load and every link replaced by the truth."""
        truth = self.read()
        if truth is None:
            return env
        nodes = dict(env.nodes)
        for node_id, true in truth.nodes.items():
            prof = nodes.get(node_id)
            if prof is None:
                if not true.up:
                    continue
                prof = NodeProfile(
                    node_id, None, 0.0, 0.0, 0, 0, 0, 0, 0, now, frozenset(), frozenset(), None
                )
            nodes[node_id] = replace(
                prof,
                speed=self.speed(true, prof.speed),
                background_util=true.background_load,
                utilization=max(prof.utilization, true.background_load),
            )
        links = dict(env.links)
        for link in truth.links:
            key = link_key(link.a, link.b)
            links[key] = LinkProfile(key[0], key[1], link.rtt_ms / 1e3, link.bandwidth_mbps * 1e6, now)
        return replace(env, nodes=nodes, links=links)

    def down(self) -> frozenset[str]:
        truth = self.truth
        return frozenset() if truth is None else frozenset(n for n, t in truth.nodes.items() if not t.up)

    @property
    def version(self) -> int:
        return -1 if self.truth is None else self.truth.version


class OracleController(AdaptiveController):
    """Plans on the truth and re-plans at once whenever it changes (no triggers, cool-down or guards)."""

    def __init__(
        self,
        blocks: Sequence[BlockCost],
        facts: ClusterFacts,
        plan_fn: PlanFn,
        evaluate_fn: EvaluateFn,
        sink: EventSink,
        settings: ControllerSettings | None,
        truth: TruthSource,
    ) -> None:
        super().__init__(blocks, facts, plan_fn, evaluate_fn, sink, settings)
        self.truth = truth
        self._planned_version: int | None = None

    def _ingest(self, now: float, inputs: MonitoringInputs) -> EnvironmentState:
        return self.truth.apply(super()._ingest(now, inputs), now)

    def _dead(self, now: float, env: EnvironmentState) -> frozenset[str]:
        known = {n.node_id for n in self.facts.nodes}
        return frozenset((self.truth.down() | env.dead_nodes(now, self.settings.heartbeat_timeout_s)) & known)

    def bootstrap(self, now: float, inputs: MonitoringInputs = MonitoringInputs()) -> DecisionEvent:
        event = super().bootstrap(now, inputs)
        self._planned_version = self.truth.version
        return event

    def on_aborted(
        self, epoch: int, now: float, failed_nodes: frozenset[str] = frozenset(), prepare_s: float = 0.0
    ) -> DecisionEvent:
        self._planned_version = None  # try again on the next cycle
        return super().on_aborted(epoch, now, failed_nodes, prepare_s)

    def tick(self, now: float, inputs: MonitoringInputs = MonitoringInputs()) -> DecisionEvent:
        env = self._env = self._ingest(now, inputs)
        self._record_measured_latency(now, env)
        if self.state is not ControllerState.RUNNING or self.plan is None:
            return DecisionEvent(now, self.highest_epoch, Action.KEEP, f"controller is {self.state.value}")
        plan, dead = self.plan, self._dead(now, env)
        lost = bool(set(plan.assignment) & dead)
        if self.truth.version == self._planned_version and not lost:
            return DecisionEvent(now, plan.epoch, Action.KEEP, "oracle: conditions unchanged")
        self._planned_version = self.truth.version
        started = time.perf_counter()
        problem = self._problem(env, inputs, dead)
        assignment = self._plan_fn(problem, None, plan.assignment, self._held(env, problem, plan.assignment))
        planning_s = time.perf_counter() - started
        if assignment is None or tuple(assignment) == plan.assignment:
            reason = "oracle: no feasible plan" if assignment is None else "oracle: current plan is optimal"
            return self._record(
                DecisionEvent(now, plan.epoch, Action.KEEP, reason, phases={"planning": planning_s})
            )
        chosen = predicted(
            CandidateKind.RESPLIT,
            tuple(assignment),
            self._evaluate(problem, tuple(assignment)),
            self.settings.thresholds,
        )
        return self._begin_rollout(now, (), [chosen], chosen, "oracle: true conditions changed", planning_s)
