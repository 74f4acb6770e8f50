"""The simulator's speed and the real controller's CPU per monitoring cycle, at the scenario's size and
scaled to 100 nodes, side by side in one run.

Run: python benchmarks/bench_sim.py [--scenario FILE] [--nodes 100] [--modes adaptive] [--probe-peers 8]
                                    [--record]

Figures: simulated seconds per wall second (the whole run: SimPy, the noise process and the real
OrchestratorCore with its planner), and ``time.process_time`` of each ``core.tick`` — every monitoring
cycle, planning included when it happens — as median, p95 and max. Rows: the scenario as written; scaled
to --nodes with every pair probed every cycle (as live nodes probe); scaled, each node probing
--probe-peers peers a cycle in rotation. Default scenario: the packaged demo.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import record

from edgesplit.evaluation.scenario import load_scenario
from edgesplit.sim.run import model_blocks, prepare_world, simulate
from edgesplit.sim.world import SimSettings

DEMO = Path(__file__).parents[1] / "src/edgesplit/evaluation/scenarios/demo-mec-smart-city.yaml"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEMO)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--modes", default="adaptive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-peers", type=int, default=8, help="the rotating-probe row: peers/node/cycle")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/bench_sim.json")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    blocks = model_blocks(scenario, args.scenario.parent)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    figures: dict[str, object] = {"scenario": scenario.name, "modes": modes}
    sizes = {
        "scenario": (None, None),
        f"{args.nodes}n": (args.nodes, None),
        f"{args.nodes}n/k={args.probe_peers}": (args.nodes, args.probe_peers),
    }
    print(
        f"{'size':>12} {'mode':>9} {'nodes':>6} {'sim s':>7} {'wall s':>7} {'sim/wall':>9} "
        f"{'cycles':>7} {'tick CPU median':>16} {'p95':>9} {'max':>9} {'reconf':>7}"
    )
    for label, (nodes, peers) in sizes.items():
        settings = SimSettings(probe_peers=peers)
        world = prepare_world(scenario, blocks, nodes=nodes, seed=args.seed, settings=settings)
        outcome = simulate(world, modes)
        for mode, run in outcome.runs.items():
            cpu_ms = [1e3 * c for c in run.cycle_cpu_s]
            row = {
                "nodes": len(world.scenario.nodes),
                "simulated_s": round(run.sim_s, 1),
                "wall_s": round(run.wall_s, 2),
                "sim_s_per_wall_s": round(run.sim_s / run.wall_s, 1),
                "cycles": len(cpu_ms),
                "tick_cpu_ms_median": round(statistics.median(cpu_ms), 2),
                "tick_cpu_ms_p95": round(_quantile(cpu_ms, 0.95), 2),
                "tick_cpu_ms_max": round(max(cpu_ms), 2),
                "reconfigurations": len(run.reconfigurations),
                "p95_latency_ms": outcome.results[mode].latency_ms.p95,
            }
            figures[f"{label}/{mode}"] = row
            print(
                f"{label:>12} {mode:>9} {row['nodes']:>6} {row['simulated_s']:>7} {row['wall_s']:>7} "
                f"{row['sim_s_per_wall_s']:>9} {row['cycles']:>7} {row['tick_cpu_ms_median']:>13} ms "
                f"{row['tick_cpu_ms_p95']:>6} ms {row['tick_cpu_ms_max']:>6} ms {row['reconfigurations']:>7}"
            )
    if args.record:
        print(f"recorded {record('bench_sim', figures)}")


if __name__ == "__main__":
    main()
