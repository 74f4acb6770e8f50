"""A simulated cluster for orchestrator tests: a hidden true environment that only emits measurements.

The controller never sees ``World``'s fields — only the telemetry, probes and latencies it produces,
with seeded noise — mirroring DESIGN §3 rule 1. Truth is computed with the planner's own §4.2 cost
model over the true parameters, so "the latency a plan really has" is independent of what the
orchestrator believes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import ControllerSettings, MonitoringInputs
from edgesplit.orchestrator.events import Action, DecisionEvent
from edgesplit.orchestrator.planner.cost import build_tables, evaluate
from edgesplit.orchestrator.planner.problem import parse_problem
from edgesplit.orchestrator.plans import Plan, segments_of
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts, LinkPrior, NodeFacts
from edgesplit.orchestrator.profiler import (
    LatencyObservation,
    LinkObservation,
    NodeTelemetry,
    WorkloadObservation,
)
from edgesplit.orchestrator.split_revision import SplitRevision

MB = 1_000_000


def make_blocks(
    layers: int = 4, layer_decode_s: float = 0.020, layer_bytes: int = 50 * MB
) -> list[BlockCost]:
    """embed, ``layers`` transformer layers, head; embed, first layer and head privacy-critical (§4.3)."""
    blocks = [BlockCost("embed", 0.0005, 10 * MB, 8192, privacy=True)]
    for i in range(layers):
        blocks.append(BlockCost(f"layer{i}", layer_decode_s, layer_bytes, 8192, 4096, privacy=i == 0))
    blocks.append(BlockCost("head", 0.005, 10 * MB, 4, privacy=True))
    return blocks


@dataclass
class TrueNode:
    speed: float
    background: float = 0.05
    trusted: bool = False
    alive: bool = True
    fetch_bps: float | None = None
    standby_all: bool = True
    """The node caches every shard on disk (a standby set covering the model)."""


@dataclass
class TrueLink:
    bandwidth_bps: float
    rtt_s: float


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class World:
    blocks: list[BlockCost]
    nodes: dict[str, TrueNode]
    links: dict[tuple[str, str], TrueLink]
    source: str = "device"
    noise: float = 0.0
    outlier_rate: float = 0.0
    seed: int = 0
    tokens_per_s: float = 20.0
    sessions: int = 4
    context_tokens: float = 256.0
    _rng: random.Random = field(init=False)
    _seq: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def facts(self) -> ClusterFacts:
        return ClusterFacts(
            nodes=tuple(
                NodeFacts(n, t.trusted, 16_000 * MB, source=n == self.source)
                for n, t in sorted(self.nodes.items())
            ),
            links=tuple(LinkPrior(a, b, 100e6, 0.005) for a, b in sorted(self.links)),
        )

    def _jitter(self, value: float) -> float:
        if self.outlier_rate and self._rng.random() < self.outlier_rate:
            return value * self._rng.choice((0.2, 5.0))
        return value * max(0.05, 1 + self._rng.gauss(0.0, self.noise))

    def true_problem(self) -> dict[str, object]:
        live = sorted(n for n, t in self.nodes.items() if t.alive)
        return {
            "blocks": [
                {
                    "name": b.name,
                    "work_ms": b.decode_s * 1e3,
                    "param_bytes": b.param_bytes,
                    "out_bytes": b.out_bytes,
                    "kv_bytes_per_token": b.kv_bytes_per_token,
                    "privacy": b.privacy,
                }
                for b in self.blocks
            ],
            "nodes": [
                {
                    "id": n,
                    "speed": self.nodes[n].speed,
                    "mem_bytes": 16_000 * MB,
                    "util": self.nodes[n].background,
                    "trusted": self.nodes[n].trusted,
                }
                for n in live
            ],
            "links": [
                {"a": a, "b": b, "bandwidth_mbps": lk.bandwidth_bps / 1e6, "rtt_ms": lk.rtt_s * 1e3}
                for (a, b), lk in sorted(self.links.items())
                if a in live and b in live
            ],
            "source": self.source,
            "token_rate": self.tokens_per_s,
            "privacy": "none",
        }

    def true_latency_s(self, assignment: tuple[str, ...]) -> float:
        if any(not self.nodes[n].alive for n in assignment):
            return float("inf")
        return evaluate(parse_problem(self.true_problem()), assignment).latency_ms / 1e3

    def measure(self, plan: Plan | None, pending_privacy_high: int = 0) -> MonitoringInputs:
        """One Δt worth of measurements under ``plan`` (what nodes, probes and the gateway report)."""
        reports = []
        for node_id, t in sorted(self.nodes.items()):
            if not t.alive:
                continue
            mine = frozenset() if plan is None else plan.blocks_on(node_id)
            own_busy = sum(self.tokens_per_s * self.blocks[b].decode_s / t.speed for b in mine)
            util = min(1.0, self._jitter(t.background) + own_busy)
            times = {
                i: self._jitter(b.decode_s / (t.speed * (1 - t.background)))
                for i, b in enumerate(self.blocks)
            }
            self._seq[node_id] = self._seq.get(node_id, 0) + 1
            cached = frozenset(range(len(self.blocks))) if t.standby_all else mine
            reports.append(
                NodeTelemetry(
                    node_id,
                    self._seq[node_id],
                    util,
                    1.0,
                    min(1.0, own_busy),
                    1 * MB,
                    16_000 * MB,
                    times,
                    {},
                    8192,
                    0,
                    0,
                    0 if plan is None else plan.epoch,
                    mine,
                    cached,
                    t.fetch_bps,
                )
            )
        links = []
        for (a, b), lk in sorted(self.links.items()):
            if not (self.nodes[a].alive and self.nodes[b].alive):
                continue
            nbytes = 256 * 1024
            wire = lk.rtt_s / 2 + nbytes * 8 / lk.bandwidth_bps
            links.append(LinkObservation(a, b, self._jitter(lk.rtt_s), nbytes, self._jitter(wire)))
        latencies = []
        if plan is not None:
            true = self.true_latency_s(plan.assignment)
            if true != float("inf"):
                latencies = [LatencyObservation(self._jitter(true), plan.epoch) for _ in range(3)]
        workload = WorkloadObservation(self.tokens_per_s, self.sessions, self.context_tokens)
        return MonitoringInputs(reports, links, latencies, workload, pending_privacy_high)


def mec_world(**kw: object) -> World:
    """device (trusted source, slow) — mec1, mec2 (untrusted, 4× faster); mec1 slightly closer."""
    nodes = {
        "device": TrueNode(speed=1.0, trusted=True),
        "mec1": TrueNode(speed=4.0),
        "mec2": TrueNode(speed=4.0),
    }
    links = {
        _pair("device", "mec1"): TrueLink(400e6, 0.002),
        _pair("device", "mec2"): TrueLink(400e6, 0.004),
        _pair("mec1", "mec2"): TrueLink(1000e6, 0.001),
    }
    return World(make_blocks(), nodes, links, **kw)  # type: ignore[arg-type]


def brute_force_plan(
    problem: dict[str, object],
    fixed: tuple[int, ...] | None,
    current: tuple[str, ...],
    held: Mapping[str, frozenset[int]] | None = None,
) -> tuple[str, ...] | None:
    """Tests' stand-in planner: exhaustive over contiguous placements, min Φ, ties keep ``current``."""
    p = parse_problem(problem)
    tables = build_tables(p)
    nodes = [n["id"] for n in problem["nodes"]]  # type: ignore[index, union-attr]
    n_blocks = len(problem["blocks"])  # type: ignore[arg-type]
    best: tuple[float, int, tuple[str, ...]] | None = None
    cuts = (
        [fixed]
        if fixed is not None
        else [c for k in range(n_blocks) for c in itertools.combinations(range(1, n_blocks), k)]
    )
    for bounds in cuts:
        edges = [0, *bounds, n_blocks]
        for owners in itertools.product(nodes, repeat=len(edges) - 1):
            if any(x == y for x, y in itertools.pairwise(owners)) and fixed is None:
                continue  # same node twice in a row is the same as a coarser split
            assignment = tuple(
                o for o, a, e in zip(owners, edges, edges[1:], strict=False) for _ in range(a, e)
            )
            cost = evaluate(p, assignment, tables)
            if not cost.feasible:
                continue
            key = (round(cost.phi, 9), 0 if assignment == current else 1, assignment)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


class ListSink:
    """Event sink for tests: keeps every appended event and applies updates by id."""

    def __init__(self) -> None:
        self.events: list[DecisionEvent] = []

    def append(self, event: DecisionEvent) -> int:
        self.events.append(event)
        return len(self.events)

    def update(self, event: DecisionEvent) -> None:
        assert event.event_id is not None
        self.events[event.event_id - 1] = event


def make_controller(
    world: World, settings: ControllerSettings | None = None, planner: str = "real"
) -> tuple[AdaptiveController, ListSink]:
    """The controller under test, with the real planner (``planner="brute"``: the exhaustive oracle)."""
    sink = ListSink()
    sr = SplitRevision()
    plan_fn = sr.plan if planner == "real" else brute_force_plan
    ctrl = AdaptiveController(world.blocks, world.facts(), plan_fn, sr.evaluate, sink, settings)
    return ctrl, sink


@dataclass
class RunLog:
    changes: list[DecisionEvent] = field(default_factory=list)
    decisions: list[DecisionEvent] = field(default_factory=list)


def run(
    ctrl: AdaptiveController,
    world: World,
    start_s: float,
    end_s: float,
    dt_s: float = 1.0,
    log: RunLog | None = None,
    on_tick: Callable[[float], None] | None = None,
    pending_privacy_high: Callable[[float], int] = lambda t: 0,
) -> RunLog:
    """Drive the controller under a fake clock; a chosen plan commits at once (rollout not simulated)."""
    log = log or RunLog()
    t = start_s
    while t < end_s:
        if on_tick is not None:
            on_tick(t)
        ev = ctrl.tick(t, world.measure(ctrl.plan, pending_privacy_high(t)))
        log.decisions.append(ev)
        if ev.action is Action.RECONFIGURE:
            assert ev.new_epoch is not None
            log.changes.append(ev)
            ctrl.on_committed(ev.new_epoch, t)
        t += dt_s
    return log


def start(ctrl: AdaptiveController, world: World, at_s: float = -100.0) -> Plan:
    """Measure, bootstrap and commit the initial plan (d_0) at ``at_s``: by default long enough ago
    that its cool-down is over when a test starts ticking at t = 1."""
    for _ in range(2):
        warmup = world.measure(None)
        for r in warmup.reports:
            ctrl.profiler.add_node_report(r, at_s)
        for lk in warmup.links:
            ctrl.profiler.add_link_observation(lk, at_s)
    inputs = world.measure(None)
    ev = ctrl.bootstrap(at_s, inputs)
    assert ev.action is Action.RECONFIGURE and ev.new_epoch == 1, ev.reason
    ctrl.on_committed(1, at_s)
    assert ctrl.plan is not None
    return ctrl.plan


def segment_nodes(plan: Plan) -> list[str]:
    return [s.node_id for s in segments_of(plan.assignment)]
