"""CPU per process of a live scenario cluster: where a 2-core machine's time goes while it serves.

Runs a scenario's undisturbed part (events dropped) in ``adaptive`` mode, optionally at another request
rate, and reads every child process's CPU time (psutil) over a window in the middle of the load. Prints
ms of CPU per second of wall time for each node, the gateway, the orchestrator and this process (the
load generator), and the run's latency figures.

    python benchmarks/bench_process_cpu.py [--scenario FILE] [--rate 1.0] [--duration 40] [--window 15]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import undisturbed_scenario

from edgesplit.evaluation.runner import run_scenario


def _role(cmdline: list[str]) -> str:
    """The child's role ("node mec1", "gateway", "orchestrator"), from its command line."""
    for i, arg in enumerate(cmdline):
        if arg in ("gateway", "orchestrator"):
            return arg
        if arg == "--config" and i + 1 < len(cmdline) and "node-" in cmdline[i + 1]:
            return "node " + Path(cmdline[i + 1]).stem.removeprefix("node-")
    return " ".join(cmdline[-2:])


def _measure(start_after_s: float, window_s: float, out: dict[str, float]) -> None:
    time.sleep(start_after_s)
    me = psutil.Process()
    procs: dict[str, psutil.Process] = {}
    for child in me.children(recursive=True):
        try:
            procs[_role(child.cmdline())] = child
        except psutil.Error:
            continue
    before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    own_before = sum(me.cpu_times()[:2])
    time.sleep(window_s)
    for name, p in procs.items():
        try:
            out[name] = 1000 * (sum(p.cpu_times()[:2]) - before[name]) / window_s
        except psutil.Error:
            continue
    out["load generator (this process)"] = 1000 * (sum(me.cpu_times()[:2]) - own_before) / window_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/mec-smart-city.yaml"))
    parser.add_argument("--rate", type=float, default=None, help="requests/s (default: the scenario's)")
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument(
        "--start-after",
        type=float,
        default=40.0,
        help="seconds into the run (start-up included)",
    )
    args = parser.parse_args()
    scenario = undisturbed_scenario(args.scenario, args.duration, args.rate)
    cpu: dict[str, float] = {}
    watcher = threading.Thread(target=_measure, args=(args.start_after, args.window, cpu), daemon=True)
    watcher.start()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as out:
        results, _ = run_scenario(scenario, ["adaptive"], Path(out))
    watcher.join(timeout=1.0)
    if not cpu:
        raise SystemExit("the window ended after the run: lower --start-after or raise --duration")
    r = results["adaptive"]
    print(f"{scenario.name}: {scenario.workload.rate_rps:g} req/s; CPU ms per s over {args.window:g} s")
    for name, ms in sorted(cpu.items()):
        print(f"  {name:32s} {ms:7.1f}")
    print(f"  {'total':32s} {sum(cpu.values()):7.1f}")
    p50, p95 = r.latency_ms.p50 or 0.0, r.latency_ms.p95 or 0.0
    print(f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, SLA hit-rate {r.sla_hit_rate or 0:.2f}")


if __name__ == "__main__":
    main()
