"""Shared benchmark harness: warm-up runs excluded, medians and ratios, results as JSON.

Benchmarks are scripts (not collected by pytest); each prints its figures and, with --record,
appends them to benchmarks/results/<name>.json. RESULTS.md is edited by hand with the command.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Measurement:
    """Repeated timings of one callable, in seconds, warm-ups excluded."""

    name: str
    samples_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def p99_s(self) -> float:
        ordered = sorted(self.samples_s)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def measure(name: str, fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Measurement:
    """Run ``fn`` ``warmup`` times unmeasured, then ``repeats`` times measured."""
    for _ in range(warmup):
        fn()
    result = Measurement(name)
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        result.samples_s.append(time.perf_counter() - start)
    return result


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, Measurement]:
    """Measure several callables round-robin, so machine noise hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    results = {name: Measurement(name) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            results[name].samples_s.append(time.perf_counter() - start)
    return results


def record(benchmark: str, figures: dict[str, object]) -> Path:
    """Write figures with machine facts to benchmarks/results/<benchmark>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}.json"
    payload = {
        "benchmark": benchmark,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "figures": figures,
    }
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)))
    return path


def undisturbed_scenario(path: Path, duration_s: float, rate_rps: float | None = None) -> Any:
    """A scenario file's undisturbed part (events dropped), ``duration_s`` long, maybe at another rate."""
    from edgesplit.evaluation.scenario import load_scenario

    scenario = load_scenario(path)
    update: dict[str, float] = {"duration_s": duration_s}
    if rate_rps is not None:
        update["rate_rps"] = rate_rps
    return scenario.model_copy(update={"events": [], "workload": scenario.workload.model_copy(update=update)})
