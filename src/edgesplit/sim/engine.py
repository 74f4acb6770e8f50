"""One mode of a scenario as a discrete-event simulation around the REAL orchestrator core.

The SimPy world (nodes, links, gateway, timed changes) produces the truth; ``Sensors`` turns it into
noisy measurements; ``OrchestratorCore`` (controller, planner, signing, store — the classes
``edgesplit orchestrator`` runs) decides; its plans take effect after a modelled prepare and commit.
The loop mirrors orchestrator/service.py: monitoring ticks every Δt, a rollout blocks the loop.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from edgesplit.evaluation.load import RequestRecord
from edgesplit.evaluation.workload import build_schedule
from edgesplit.orchestrator.controller_settings import MonitoringInputs
from edgesplit.orchestrator.core import OrchestratorCore, Step
from edgesplit.orchestrator.events import Action, DecisionEvent
from edgesplit.orchestrator.plans import Plan
from edgesplit.sim.gateway import SimGateway
from edgesplit.sim.resources import Links, SimNode
from edgesplit.sim.sensors import Sensors
from edgesplit.sim.truth import Change, TrueCluster, scenario_changes
from edgesplit.sim.world import SimWorld, make_core

UTILIZATION_SAMPLE_S = 1.0
"""As evaluation/runner.py: mean busy share of the live nodes, sampled every second of the load."""

ProgressFn = Callable[[float, float], None]
"""``(simulated seconds done, simulated seconds planned)``."""


@dataclass
class SimRun:
    """Everything one mode's run produced; all times are seconds after the load started."""

    mode: str
    records: list[RequestRecord]
    steps: list[tuple[float, float, int]]
    """(t, true decode-step latency s, epoch) of every decode step."""
    plans: list[tuple[float, Plan]]
    """Every plan committed, the initial deployment included (at a negative t)."""
    events: list[tuple[float, str]]
    """The scenario events as applied."""
    decisions: list[DecisionEvent]
    utilization: list[float]
    cycle_cpu_s: list[float] = field(default_factory=list)
    """Wall-clock CPU of each monitoring cycle's ``core.tick`` (planner included)."""
    inputs: list[tuple[float, MonitoringInputs]] = field(default_factory=list)
    """What the controller was fed each cycle (kept only when asked for)."""
    sim_s: float = 0.0
    wall_s: float = 0.0

    @property
    def reconfigurations(self) -> list[tuple[float, str]]:
        """Plans committed during the load (the initial deployment is not a reconfiguration)."""
        return [
            (t, f"epoch {p.epoch}: {' '.join(str(s) for s in p.segments)}") for t, p in self.plans if t >= 0
        ]


class ClusterSim:
    """Builds the SimPy model of ``world`` for ``mode``; ``run()`` simulates it to the end."""

    def __init__(self, world: SimWorld, mode: str, *, keep_inputs: bool = False) -> None:
        self.world = world
        self.mode = mode
        self.keep_inputs = keep_inputs
        s = world.settings
        self.env = simpy.Environment()
        self.truth = TrueCluster(world.scenario.cluster(), world.blocks)
        self.sensors = Sensors(self.truth, s.noise, s.seed, s.restart_resets_seq)
        self.nodes = {n: SimNode(self.env, n, self.truth) for n in sorted(self.truth.nodes)}
        self.links = Links(self.env, self.truth)
        scenario = world.scenario
        trusted = frozenset(n.id for n in scenario.nodes if n.trusted)
        self.gateway = SimGateway(
            self.env,
            self.nodes,
            self.links,
            world.blocks,
            world.source,
            trusted,
            frozenset(world.privacy_blocks),
            input_bytes=world.facts.input_bytes,
            timeout_s=scenario.gateway.request_timeout_s,
            poll_s=s.failover_poll_s,
        )
        self.t0 = s.lead_in_s
        self.core: OrchestratorCore = make_core(world, mode, lambda: self.truth.oracle_truth(self.now))
        self.run_record = SimRun(mode, self.gateway.records, self.gateway.steps, [], [], [], [])
        self._pairs_for, self._live, self._cycle = -1, list[tuple[str, str]](), 0
        self._changes = scenario_changes(scenario.events, scenario.cluster(), s.lead_in_s)

    @property
    def now(self) -> float:
        """Seconds on the load's clock (negative during the lead-in)."""
        return self.env.now - self.t0

    # ---- the run ---------------------------------------------------------------------------------

    def run(self, progress: ProgressFn | None = None, chunk_s: float = 1.0) -> SimRun:
        s = self.world.settings
        scenario = self.world.scenario
        self.env.process(self._control())
        for change in self._changes:
            self.env.process(self._change(change))
        self.env.process(self._sample_utilization(scenario.workload.duration_s))
        self.gateway.start_load(build_schedule(scenario), self.t0)
        limit = self.t0 + scenario.workload.duration_s + scenario.gateway.request_timeout_s + s.drain_s
        started = time.perf_counter()
        while not self.gateway.finished.triggered and self.env.now < limit:
            self.env.run(until=min(limit, self.env.now + chunk_s))
            if progress is not None:
                progress(self.env.now, limit)
        self.gateway.abandon()  # anything still running at the limit has long passed its timeout
        self.run_record.sim_s = self.env.now
        self.run_record.wall_s = time.perf_counter() - started
        self.run_record.records.sort(key=lambda r: r.index)
        return self.run_record

    def _change(self, change: Change) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(0.0, self.t0 + change.at_s - self.env.now))
        self.truth.apply(change)
        if change.kind == "node_kill":
            self.nodes[change.a].kill()
        if change.scenario_event:
            self.run_record.events.append((self.now, change.label))

    def _sample_utilization(self, duration_s: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.t0)
        last = {n: node.busy_total_s for n, node in self.nodes.items()}
        while self.now < duration_s:
            yield self.env.timeout(UTILIZATION_SAMPLE_S)
            shares = []
            for n, node in self.nodes.items():
                if node.up:
                    shares.append(min(1.0, (node.busy_total_s - last[n]) / UTILIZATION_SAMPLE_S))
                last[n] = node.busy_total_s
            if shares:
                self.run_record.utilization.append(sum(shares) / len(shares))

    # ---- the orchestrator's loop (orchestrator/service.py ``run``) -------------------------------

    def _control(self) -> Generator[simpy.Event, Any, None]:
        interval = self.world.settings.monitor_interval_s
        # 1) Start: every node reports its join profile; plan and roll out d_0.
        live = [n for n in self.nodes if self.nodes[n].up]
        reports = [self.sensors.join_profile(n) for n in live]
        inputs = MonitoringInputs(reports=reports, links=self.sensors.probes(self._live_pairs()))
        step = self._timed(self.core.start, {}, inputs)
        self._note(step.event)
        if step.message is not None:
            yield from self._roll_out(step)
        joined, last = set(live), self.env.now
        while True:
            # 2) Wait Δt. 3) Collect what arrived: node reports, probes, the gateway's observations.
            yield self.env.timeout(interval)
            covered, last = self.env.now - last, self.env.now  # longer than Δt after a rollout
            reports = []
            for n, node in self.nodes.items():
                if not node.up:
                    joined.discard(n)  # a dead process reports nothing; a restarted one re-profiles
                    continue
                sessions = len(self.gateway.live) if self._serving(n) else 0
                record = node.take_interval(sessions)
                if n in joined:
                    reports.append(self.sensors.node_report(n, record, covered))
                else:
                    reports.append(self.sensors.join_profile(n, restarted=True))
                    joined.add(n)
            probes = self.sensors.probes(self._live_pairs())
            inputs = self.sensors.monitoring_inputs(reports, probes, self.gateway.take_interval(), covered)
            if self.keep_inputs:
                self.run_record.inputs.append((self.now, inputs))
            # 4) One cycle of Algorithm 1, on measurements only. 5) A new plan: roll it out.
            step = self._timed(self.core.tick, inputs)
            self._note(step.event)
            if step.message is not None:
                yield from self._roll_out(step)

    def _timed(self, call: Callable[..., Step], *args: Any) -> Step:
        """``call(now, *args)``, its CPU time recorded as one monitoring cycle's."""
        started = time.process_time()
        step = call(self.now, *args)
        self.run_record.cycle_cpu_s.append(time.process_time() - started)
        return step

    def _note(self, event: DecisionEvent) -> None:
        """Keep the decisions the orchestrator logs; a rollout's outcome updates its decision in place."""
        decisions = self.run_record.decisions
        if event.event_id is not None and any(d.event_id == event.event_id for d in decisions):
            decisions[:] = [event if d.event_id == event.event_id else d for d in decisions]
        elif event.event_id is not None or event.action is not Action.KEEP:
            decisions.append(event)

    def _serving(self, node: str) -> bool:
        plan = self.gateway.plan
        return plan is not None and node in plan.nodes

    def _live_pairs(self) -> list[tuple[str, str]]:
        """The pairs of live nodes probed this cycle: all, or ``probe_peers`` per node in rotation."""
        k = self.world.settings.probe_peers
        live = [n for n, node in self.nodes.items() if node.up]
        if k is None or k >= len(live) - 1:
            if self._pairs_for != self.truth.version:  # only a change of the truth can kill a node
                self._pairs_for = self.truth.version
                self._live = list(itertools.combinations(live, 2))
            return self._live
        self._cycle += 1
        n = len(live)
        picked = {
            (live[min(i, j)], live[max(i, j)])
            for i in range(n)
            for m in range(k)
            if (j := (i + 1 + (self._cycle * k + m) % (n - 1)) % n) != i
        }
        return sorted(picked)

    def _roll_out(self, step: Step) -> Generator[simpy.Event, Any, None]:
        """Prepare (load what each node lacks) → commit → the gateway switches → release the old epoch
        later; a node of the plan that is down by then aborts it (DESIGN §4.6)."""
        assert step.plan is not None
        s = self.world.settings
        plan, old = step.plan, self.gateway.plan
        started = self.env.now
        load_s = 0.0
        for n in sorted(plan.nodes):
            missing = plan.blocks_on(n) - self.nodes[n].holds()
            load_s = max(
                load_s, sum(self.world.blocks[b].param_bytes for b in missing) / s.disk_read_bytes_per_s
            )
        yield self.env.timeout(s.prepare_base_s + load_s)
        prepare_s = self.env.now - started
        failed = frozenset(n for n in plan.nodes if not self.nodes[n].up or not self._fits(n, plan))
        if failed:
            self._note(self.core.aborted(plan.epoch, self.now, failed, prepare_s).event)
            return
        for n in plan.nodes:
            self.nodes[n].epochs[plan.epoch] = tuple(
                (g.start, g.end) for g in plan.segments if g.node_id == n
            )
        yield self.env.timeout(s.commit_s)
        down = frozenset(n for n in plan.nodes if not self.nodes[n].up)
        if down:
            for n in plan.nodes:
                self.nodes[n].release(plan.epoch)
            self._note(self.core.aborted(plan.epoch, self.now, down, prepare_s).event)
            return
        self.gateway.plan = plan
        self.run_record.plans.append((self.now, plan))
        self._note(self.core.committed(plan.epoch, self.now, prepare_s, s.commit_s).event)
        if old is not None:
            self.env.process(self._release(old.epoch))

    def _fits(self, node: str, plan: Plan) -> bool:
        """A node refuses a prepare that would hold more weights than its memory cap (node/service.py)."""
        cap = self.truth.nodes[node].memory_cap_bytes
        need = self.nodes[node].holds() | plan.blocks_on(node)
        return cap is None or sum(self.world.blocks[b].param_bytes for b in need) <= cap

    def _release(self, epoch: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.world.settings.release_delay_s)
        for node in self.nodes.values():
            node.release(epoch)
