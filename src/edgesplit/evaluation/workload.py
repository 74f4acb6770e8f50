"""The request stream of a scenario: arrival times, prompts and privacy tags, fixed by the seed.

Pure and deterministic: every mode of a run is sent exactly this list. Knows nothing of HTTP.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from edgesplit.evaluation.scenario import Scenario, WorkloadConfig

# Words the built-in tokenizers keep as one token each (checked in tests), so a prompt of N words
# is about N tokens without the workload needing a tokenizer.
PROMPT_WORDS: tuple[str, ...] = tuple(
    "the a and are blocks cut end in is layers mark not on run text to was with".split()  # noqa: SIM905
)
FIRST_WORDS = ("a", "and", "are", "end", "in", "is", "on")
"""Words that stay one token even without a leading space: they open a prompt."""


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the open-loop schedule."""

    index: int
    send_at_s: float
    """When to send it, in seconds after the load starts."""
    prompt: str
    max_tokens: int
    privacy: Literal["high", "none"]


def build_schedule(scenario: Scenario) -> list[PlannedRequest]:
    """Every request of the run, in send order; the same seed always gives the same list."""
    workload = scenario.workload
    rng = random.Random(workload.seed)
    requests = []
    for index, send_at_s in enumerate(arrival_times(workload, rng)):
        words = [rng.choice(FIRST_WORDS)]
        words += [rng.choice(PROMPT_WORDS) for _ in range(workload.prompt_tokens - 1)]
        privacy: Literal["high", "none"] = "high" if rng.random() < workload.privacy_high_fraction else "none"
        requests.append(PlannedRequest(index, send_at_s, " ".join(words), workload.output_tokens, privacy))
    return requests


def arrival_times(workload: WorkloadConfig, rng: random.Random) -> list[float]:
    """Send times in [0, duration_s): Poisson (exponential gaps) or evenly spaced at ``rate_rps``."""
    if workload.arrivals == "uniform":
        gap = 1.0 / workload.rate_rps
        count = int(workload.duration_s * workload.rate_rps - 1e-9) + 1
        return [i * gap for i in range(count) if i * gap < workload.duration_s]
    times: list[float] = []
    t = rng.expovariate(workload.rate_rps)
    while t < workload.duration_s:
        times.append(t)
        t += rng.expovariate(workload.rate_rps)
    return times
