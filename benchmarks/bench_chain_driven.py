"""Chain-driven decoding vs one gateway round trip per token, on a live scenario cluster.

Runs a scenario's undisturbed part (events dropped) in ``adaptive`` mode twice per round — the gateway
sending every decode step itself (``gateway.chain_driven: false``) and the last node feeding each token
back to the first (the default) — alternating the order each round, and prints the latency figures
side by side with their ratios.

    python benchmarks/bench_chain_driven.py [--scenario FILE] [--rate R] [--duration 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness import undisturbed_scenario

from edgesplit.evaluation.runner import run_scenario
from edgesplit.evaluation.scenario import Scenario

VARIANTS = {"per-step": False, "chain-driven": True}


def _variant(scenario: Scenario, chain_driven: bool) -> Scenario:
    gateway = scenario.gateway.model_copy(update={"chain_driven": chain_driven})
    return scenario.model_copy(update={"gateway": gateway})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/mec-smart-city.yaml"))
    parser.add_argument("--rate", type=float, default=None, help="requests/s (default: the scenario's)")
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scenario = undisturbed_scenario(args.scenario, args.duration, args.rate)
    figures: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        order = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            with tempfile.TemporaryDirectory(prefix="bench-chain-") as out:
                results, _ = run_scenario(_variant(scenario, VARIANTS[name]), ["adaptive"], Path(out))
            r = results["adaptive"]
            row = (
                r.latency_ms.p50 or 0.0,
                r.latency_ms.p95 or 0.0,
                r.ttft_ms.p50 or 0.0,
                r.sla_hit_rate or 0.0,
            )
            figures[name].append(row)
            print(
                f"round {round_index + 1} {name:13s} p50 {row[0]:6.0f} ms  p95 {row[1]:6.0f} ms  "
                f"TTFT p50 {row[2]:5.0f} ms  SLA {row[3]:.2f}",
                flush=True,
            )
    rate = scenario.workload.rate_rps
    print(
        f"\n{scenario.name}, events dropped, {args.duration:g} s at {rate:g} req/s, {args.rounds} rounds "
        "(medians over rounds)"
    )
    med = {
        name: [statistics.median(col) for col in zip(*rows, strict=True)] for name, rows in figures.items()
    }
    for name, (p50, p95, ttft, sla) in med.items():
        print(f"  {name:13s} p50 {p50:6.0f} ms  p95 {p95:6.0f} ms  TTFT p50 {ttft:5.0f} ms  SLA {sla:.2f}")
    a, b = med["chain-driven"], med["per-step"]
    print(f"  ratio chain-driven / per-step: p50 {a[0] / b[0]:.2f}, p95 {a[1] / b[1]:.2f}")


if __name__ == "__main__":
    main()
