"""Phase alignment of out-of-phase sessions on a node (node/worker.py), measured on the real cluster.

Runs the undisturbed part of a scenario (its events dropped) with the nodes' ``batch_align_ms`` at 0
(never wait: sessions that reach a node out of phase take turns) and at the default, alternating the
order each round, the same seeded open-loop requests each time. Prints latency p50/p95 and the SLA
hit-rate per run and the medians' ratios.

    python benchmarks/bench_alignment.py [--scenario FILE] [--duration 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import edgesplit.cluster.launcher as launcher
from edgesplit.evaluation.runner import run_scenario
from edgesplit.evaluation.scenario import load_scenario

DEFAULT_ALIGN_MS = 20.0


def _with_align(align_ms: float) -> None:
    """Every node config the launcher writes gets ``batch_align_ms`` (a node runtime setting)."""
    original = launcher.__dict__.setdefault("_original_node_config", launcher.node_config)

    def node_config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original(*args, **kwargs)
        config["batch_align_ms"] = align_ms
        return config

    launcher.node_config = node_config


def _run(scenario_path: Path, duration_s: float, align_ms: float) -> dict[str, float]:
    scenario = load_scenario(scenario_path)
    workload = scenario.workload.model_copy(update={"duration_s": duration_s})
    scenario = scenario.model_copy(update={"events": [], "workload": workload})
    _with_align(align_ms)
    with tempfile.TemporaryDirectory(prefix="bench-align-") as out:
        results, _ = run_scenario(scenario, ["adaptive"], Path(out))
    r = results["adaptive"]
    return {"p50": r.latency_ms.p50 or 0.0, "p95": r.latency_ms.p95 or 0.0, "sla": r.sla_hit_rate or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/mec-smart-city.yaml"))
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for i in range(args.rounds):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for name in order:
            figures = _run(args.scenario, args.duration, 0.0 if name == "off" else DEFAULT_ALIGN_MS)
            runs[name].append(figures)
            print(
                f"round {i + 1} align {name:3s}: p50 {figures['p50']:.0f} ms  p95 {figures['p95']:.0f} ms  "
                f"SLA {figures['sla']:.2f}",
                flush=True,
            )
    med = {
        n: {k: statistics.median(f[k] for f in rs) for k in ("p50", "p95", "sla")} for n, rs in runs.items()
    }
    for n in ("off", "on"):
        m = med[n]
        print(f"median align {n}: p50 {m['p50']:.0f} ms  p95 {m['p95']:.0f} ms  SLA {m['sla']:.2f}")
    print(
        f"on/off: p50 {med['on']['p50'] / med['off']['p50']:.2f}x  "
        f"p95 {med['on']['p95'] / med['off']['p95']:.2f}x  "
        f"SLA {med['on']['sla'] - med['off']['sla']:+.2f}"
    )


if __name__ == "__main__":
    main()
