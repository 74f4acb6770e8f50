"""Planner solve time and optimality gap per solver, over model depth B × cluster size N.

Run: python benchmarks/bench_planner.py [--blocks 16,34,82] [--nodes 4,16,64,256,1024]
         [--solvers dp,exact,greedy,auto] [--time-limit-s 10] [--repeats 3] [--record]

Instances are synthetic device/MEC/cloud clusters (seeded): one trusted source device, MEC nodes
near it, cloud nodes far away, full-mesh links; embedding, first layer and head are privacy-critical.
Two memory regimes: ``roomy`` (the fastest reachable nodes hold the model, so a shortest path
already fits) and ``tight`` (every MEC node holds only a slice, so memory binds and CP-SAT works).
Gap = (Φ − best Φ found by any solver) / best; "proved" = the plan carries a proof of optimality.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import record

from edgesplit.errors import InfeasibleError
from edgesplit.orchestrator.planner import Block, Link, Node, Problem, Source, Weights, solve

GB = 10**9


def make_cluster(n_blocks: int, n_nodes: int, regime: str, seed: int = 0) -> Problem:
    """A seeded device/MEC/cloud problem: 0.4 GB fp16-class layers, 8 KiB activations."""
    rng = random.Random(seed * 7919 + n_blocks * 31 + n_nodes)
    layer_bytes = 400_000_000
    blocks = [Block("embed", 0.2, 250_000_000, 0.0, 8192, True)]
    blocks += [Block(f"layer{i}", 1.0, layer_bytes, 16384.0, 8192, i == 0) for i in range(n_blocks - 2)]
    blocks.append(Block("head", 0.6, 250_000_000, 0.0, 4, True))
    model_bytes = sum(b.param_bytes for b in blocks)
    nodes = [Node("device", 0.4, 3 * GB, 0.1, True)]
    n_mec = max(1, (n_nodes - 1) * 2 // 3)
    for i in range(n_mec):
        if regime == "tight":
            mem = int(model_bytes * rng.uniform(0.15, 0.45))
        else:
            mem = int(model_bytes * rng.uniform(0.6, 1.6))
        nodes.append(Node(f"mec{i}", rng.uniform(2.0, 6.0), mem, rng.uniform(0.0, 0.6), rng.random() < 0.02))
    for i in range(n_nodes - 1 - n_mec):
        nodes.append(
            Node(f"cloud{i}", rng.uniform(8.0, 20.0), 10 * model_bytes, rng.uniform(0.0, 0.7), False)
        )
    links = []
    for a in range(len(nodes)):
        for b in range(a + 1, len(nodes)):
            na, nb = nodes[a].id, nodes[b].id
            kinds = {na.rstrip("0123456789"), nb.rstrip("0123456789")}
            if kinds == {"device", "mec"}:
                bw, rtt = rng.uniform(100, 800), rng.uniform(2, 10)
            elif kinds == {"device", "cloud"}:
                bw, rtt = rng.uniform(20, 100), rng.uniform(40, 80)
            elif kinds == {"mec"}:
                bw, rtt = rng.uniform(1000, 10000), rng.uniform(0.5, 3)
            elif kinds == {"mec", "cloud"}:
                bw, rtt = rng.uniform(1000, 10000), rng.uniform(15, 40)
            else:
                bw, rtt = 10000.0, rng.uniform(0.5, 2)
            links.append(Link(na, nb, round(bw, 1), round(rtt, 2)))
    source = Source("device", token_rate=20.0, sessions=4, input_bytes=4, privacy="high")
    return Problem(
        tuple(blocks), tuple(nodes), tuple(links), (source,), context_tokens=512, weights=Weights()
    )


def run_one(problem: Problem, solver: str, time_limit_s: float, repeats: int) -> dict[str, object]:
    """Median wall and CPU time of ``solve`` (a warm-up run first when repeats > 1)."""
    walls, cpus, plan = [], [], None
    for i in range(repeats + (1 if repeats > 1 else 0)):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            plan = solve(problem, solver, time_limit_s=time_limit_s)
        except InfeasibleError as exc:
            return {"error": str(exc)[:80]}
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if repeats > 1 and i == 0:
            continue
        walls.append(wall)
        cpus.append(cpu)
        if wall > 5 * time_limit_s / 10:
            break  # slow cases: one measured run is enough
    assert plan is not None
    return {
        "wall_ms": statistics.median(walls) * 1e3,
        "cpu_ms": statistics.median(cpus) * 1e3,
        "phi": plan.cost.phi,
        "proved": plan.optimal,
        "pruned": plan.pruned,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", default="16,34,82")
    ap.add_argument("--nodes", default="4,16,64,256,1024")
    ap.add_argument("--solvers", default="dp,exact,greedy,auto")
    ap.add_argument("--regimes", default="roomy,tight")
    ap.add_argument("--time-limit-s", type=float, default=10.0)
    ap.add_argument("--exact-max-nodes", type=int, default=256, help="skip exact above this N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    rows = []
    print("| regime | B | N | solver | wall ms | CPU ms | Φ | gap | proved | pruned |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for regime in args.regimes.split(","):
        for n_blocks in map(int, args.blocks.split(",")):
            for n_nodes in map(int, args.nodes.split(",")):
                problem = make_cluster(n_blocks, n_nodes, regime)
                results = {}
                for solver in args.solvers.split(","):
                    if solver in ("exact", "dp") and n_nodes > args.exact_max_nodes:
                        results[solver] = {"skipped": f"N > {args.exact_max_nodes}"}
                        continue
                    results[solver] = run_one(problem, solver, args.time_limit_s, args.repeats)
                best = min((r["phi"] for r in results.values() if "phi" in r), default=None)
                for solver, r in results.items():
                    row = {"regime": regime, "blocks": n_blocks, "nodes": n_nodes, "solver": solver, **r}
                    if "phi" in r and best:
                        row["gap"] = (r["phi"] - best) / best
                    rows.append(row)
                    if "phi" in r:
                        pruned = f"{r['pruned']['kept']}/{r['pruned']['of']}" if r["pruned"] else ""
                        proved = "yes" if r["proved"] else "no"
                        timing = [f"{r['wall_ms']:.1f}", f"{r['cpu_ms']:.1f}"]
                        cells = [regime, n_blocks, n_nodes, solver, *timing]
                        cells += [f"{r['phi']:.3f}", f"{100 * row['gap']:.2f} %", proved, pruned]
                        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
                    else:
                        print(f"| {regime} | {n_blocks} | {n_nodes} | {solver} | {r} |", flush=True)
    if args.record:
        print(record("bench_planner", {"rows": rows, "args": vars(args)}))


if __name__ == "__main__":
    main()
