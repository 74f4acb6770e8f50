"""Orchestrator CPU per monitoring cycle on a 100-node cluster (the paper's bound: <= 10 ms).

Run: python benchmarks/bench_orchestrator.py [--nodes 100] [--repeats 200] [--record]

CPU time (``time.process_time``) is the figure that answers the bound; wall time on the shared
2-core machine includes waiting for the CPU, so cycles the OS did not preempt are reported apart.

One cycle = fold in one telemetry report per node, 4 link probes per node and 20 gateway latency
samples, build E(t), check liveness and ShouldReconfigure — i.e. ``AdaptiveController.tick`` on a
cycle where no trigger fires (the steady state, which is almost every cycle). For scale it also
times a cycle that does fire and re-plan with the real planner (not covered by the 10 ms bound:
it runs only when a trigger fires, at most once per re-plan interval).
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import interleaved, record

from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import ControllerSettings, MonitoringInputs
from edgesplit.orchestrator.events import DecisionEvent
from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts, LinkPrior, NodeFacts
from edgesplit.orchestrator.profiler import (
    LatencyObservation,
    LinkObservation,
    NodeTelemetry,
    WorkloadObservation,
)
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.triggers import Hysteresis

MB = 1_000_000


class _NullSink:
    def append(self, event: DecisionEvent) -> int:
        return 0

    def update(self, event: DecisionEvent) -> None:
        return None


def build(n_nodes: int, n_layers: int = 32) -> tuple[AdaptiveController, list[str], Plan]:
    blocks = [BlockCost("embed", 0.0005, 260 * MB, 8192, privacy=True)]
    blocks += [BlockCost(f"layer{i}", 0.02, 400 * MB, 8192, 131072, privacy=i == 0) for i in range(n_layers)]
    blocks.append(BlockCost("head", 0.005, 260 * MB, 4, privacy=True))
    names = ["device"] + [f"mec{i}" for i in range(1, n_nodes)]
    facts = ClusterFacts(
        nodes=tuple(NodeFacts(n, n == "device", 16_000 * MB, source=n == "device") for n in names),
        default_link=LinkPrior("", "", 100e6, 0.005),
    )
    sr = SplitRevision(time_limit_s=2.0)
    # No periodic improvement check: this measures the monitoring cycle, not planning.
    settings = ControllerSettings(improvement_interval_s=None)
    ctrl = AdaptiveController(blocks, facts, sr.plan, sr.evaluate, _NullSink(), settings)
    # A plan over a handful of nodes: device holds the privacy blocks (embed, layer 0, head), four
    # MEC nodes share the other layers.
    shared = range(2, n_layers + 1)
    middle = [names[1 + (i - 2) * 4 // len(shared)] for i in shared]
    assignment = ("device", "device", *middle, "device")
    plan = Plan(1, assignment)
    ctrl.adopt(plan)
    return ctrl, names, plan


def inputs_for(names: list[str], plan: Plan, seq: int, rng: random.Random) -> MonitoringInputs:
    reports = []
    for n in names:
        mine = plan.blocks_on(n)
        times = {b: 0.005 * rng.uniform(0.95, 1.05) for b in (mine or {1, 2})}
        reports.append(
            NodeTelemetry(
                n,
                seq,
                rng.uniform(0.2, 0.4),
                1.0,
                0.1,
                2000 * MB,
                12_000 * MB,
                times,
                {},
                8192,
                1,
                4,
                plan.epoch,
                mine,
                mine,
            )
        )
    links = []
    for i, a in enumerate(names):
        for k in (1, 2, 3, 5):  # 4 probes per node to ring neighbours
            b = names[(i + k) % len(names)]
            links.append(
                LinkObservation(a, b, 0.002 * rng.uniform(0.9, 1.1), 262144, 0.006 * rng.uniform(0.9, 1.1))
            )
    latencies = [LatencyObservation(0.08 * rng.uniform(0.9, 1.1), plan.epoch) for _ in range(20)]
    return MonitoringInputs(reports, links, latencies, WorkloadObservation(20.0, 4, 256.0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--plan-nodes", type=int, default=10, help="cluster size for the triggered cycle")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    ctrl, names, plan = build(args.nodes)
    rng = random.Random(0)
    n_blocks = len(ctrl.blocks)
    prepared = [inputs_for(names, plan, s, rng) for s in range(1, args.repeats + 6)]
    seqs = itertools.count()
    clock = itertools.count(1)
    cpu: list[float] = []

    unpreempted_wall: list[float] = []

    def cycle() -> None:
        # Inputs are built beforehand, each with the next report seq (stale seqs are ignored).
        inputs = prepared[next(seqs)]
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        wall, start = time.perf_counter(), time.process_time()
        ev = ctrl.tick(float(next(clock)), inputs)
        cpu.append(time.process_time() - start)
        if resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw == switches:
            unpreempted_wall.append(time.perf_counter() - wall)
        assert ev.reason == "no trigger", ev.reason

    results = interleaved({"monitoring_cycle": cycle}, repeats=args.repeats, warmup=5)
    wall = results["monitoring_cycle"]
    cpu_sorted = sorted(cpu[5:])
    cpu_median = cpu_sorted[len(cpu_sorted) // 2]
    cpu_p99 = cpu_sorted[min(len(cpu_sorted) - 1, round(0.99 * (len(cpu_sorted) - 1)))]

    # One triggered cycle with planning, for scale (fresh controller so cool-down/hysteresis allow it).
    ctrl2, names2, plan2 = build(args.plan_nodes)
    ctrl2.settings = ControllerSettings(hysteresis=Hysteresis(persist_ticks=1), improvement_interval_s=None)
    hot = inputs_for(names2, plan2, 1, random.Random(1))
    hot = MonitoringInputs(hot.reports, hot.links, [LatencyObservation(0.5, 1)] * 20, hot.workload)
    start = time.perf_counter()
    ev = ctrl2.tick(1.0, hot)
    plan_cycle_s = time.perf_counter() - start

    figures = {
        "nodes": args.nodes,
        "blocks": n_blocks,
        "probes_per_cycle": len(prepared[0].links),
        "cycle_wall_ms_median": wall.median_s * 1e3,
        "cycle_wall_ms_p99": wall.p99_s * 1e3,
        "cycle_cpu_ms_median": cpu_median * 1e3,
        "cycle_cpu_ms_p99": cpu_p99 * 1e3,
        "cycles_not_preempted": len(unpreempted_wall),
        "cycle_wall_ms_median_not_preempted": statistics.median(unpreempted_wall) * 1e3
        if unpreempted_wall
        else float("nan"),
        "bound_ms": 10.0,
        "triggered_cycle_nodes": args.plan_nodes,
        "triggered_cycle_with_planning_ms": plan_cycle_s * 1e3,
        "triggered_cycle_reason": ev.reason,
    }
    for k, v in figures.items():
        print(f"{k:36s} {v:.3f}" if isinstance(v, float) else f"{k:36s} {v}")
    if args.record:
        print("recorded:", record("orchestrator", figures))


if __name__ == "__main__":
    main()
