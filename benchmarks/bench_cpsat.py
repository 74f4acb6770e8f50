"""CP-SAT workers: one deterministic worker vs a 2-worker portfolio, on instances only CP-SAT answers.

Run: python benchmarks/bench_cpsat.py [--blocks 16,34] [--nodes 4,16] [--workers 1,2] [--repeats 3] [--record]

bench_planner's seeded clusters with β = 50 (U with a token rate) and with the throughput objective:
neither is additive, so the shortest path and the run search do not apply and CP-SAT decides. Workers
are measured side by side per instance; "plans" counts the distinct assignments over the repeats (1 =
the same plan every time; more = equal-cost ties resolved differently, or a time-limited search).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_planner import make_cluster
from harness import record

from edgesplit.orchestrator.planner import Problem, SearchOptions, Weights, solve


def run(problem: Problem, objective: str, workers: int, repeats: int, limit_s: float) -> dict[str, object]:
    walls, plans, proved = [], set(), 0
    for _ in range(repeats):
        started = time.perf_counter()
        plan = solve(
            problem,
            "exact",
            objective=objective,  # type: ignore[arg-type]
            restrictions=SearchOptions(workers=workers),
            time_limit_s=limit_s,
        )
        walls.append(time.perf_counter() - started)
        plans.add(plan.assignment)
        proved += plan.optimal
    return {"wall_ms": statistics.median(walls) * 1e3, "plans": len(plans), "proved": proved, "of": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", default="16,34")
    ap.add_argument("--nodes", default="4,16")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-limit-s", type=float, default=10.0)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    rows = []
    print("| regime | B | N | objective | workers | wall ms (median) | proved | distinct plans |")
    print("|---|---:|---:|---|---:|---:|---|---:|")
    for regime in ("tight", "roomy"):
        for n_blocks in map(int, args.blocks.split(",")):
            for n_nodes in map(int, args.nodes.split(",")):
                base = make_cluster(n_blocks, n_nodes, regime)
                cases = {"latency, β=50": (replace(base, weights=Weights(1.0, 50.0, 0.0)), "latency")}
                cases["throughput"] = (base, "throughput")
                for label, (problem, objective) in cases.items():
                    for workers in map(int, args.workers.split(",")):
                        r = run(problem, objective, workers, args.repeats, args.time_limit_s)
                        rows.append({"regime": regime, "blocks": n_blocks, "nodes": n_nodes, "case": label,
                                     "workers": workers, **r})  # fmt: skip
                        cells = [regime, n_blocks, n_nodes, label, workers, f"{r['wall_ms']:.0f}"]
                        cells += [f"{r['proved']}/{r['of']}", r["plans"]]
                        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    totals = {
        w: sum(float(r["wall_ms"]) for r in rows if r["workers"] == w) for w in {r["workers"] for r in rows}
    }
    print("sum of medians (ms):", {w: round(t) for w, t in sorted(totals.items())})
    if args.record:
        print(record("bench_cpsat", {"rows": rows, "args": vars(args)}))


if __name__ == "__main__":
    main()
