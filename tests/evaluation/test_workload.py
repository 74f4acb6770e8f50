"""The open-loop schedule: deterministic from the seed, Poisson or uniform, prompts of the asked length."""

from __future__ import annotations

import itertools
import statistics

import pytest

from edgesplit.evaluation.scenario import Scenario, parse_scenario
from edgesplit.evaluation.workload import FIRST_WORDS, PROMPT_WORDS, build_schedule


def scenario(**workload: object) -> Scenario:
    fields = {"rate_rps": 5, "duration_s": 60, "prompt_tokens": 12, "output_tokens": 6, "seed": 3} | workload
    body = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return parse_scenario(
        "name: w\nmodel: builtin:llama-tiny\n"
        "nodes: [{id: device, source: true, trusted: true}, {id: cloud}]\n"
        f"workload: {{{body}}}\n"
    )


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    first, again = build_schedule(scenario()), build_schedule(scenario())
    assert first == again
    other = build_schedule(scenario(seed=4))
    assert [r.send_at_s for r in other] != [r.send_at_s for r in first]
    assert [r.prompt for r in other[:5]] != [r.prompt for r in first[:5]]


def test_poisson_arrivals_have_the_rate_and_exponential_spread() -> None:
    schedule = build_schedule(scenario(rate_rps=10, duration_s=200))
    times = [r.send_at_s for r in schedule]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 200
    assert [r.index for r in schedule] == list(range(len(schedule)))
    # 2000 expected; a Poisson count has sd ~45, so +-200 fails only for a wrong rate.
    assert 1800 < len(schedule) < 2200
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.mean(gaps) == pytest.approx(0.1, rel=0.1)
    # exponential gaps: standard deviation equals the mean (coefficient of variation 1)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.1)


def test_uniform_arrivals_are_evenly_spaced() -> None:
    schedule = build_schedule(scenario(rate_rps=4, duration_s=3, arrivals="uniform"))
    assert [r.send_at_s for r in schedule] == pytest.approx([i * 0.25 for i in range(12)])


def test_requests_carry_max_tokens_and_the_privacy_mix() -> None:
    schedule = build_schedule(scenario(rate_rps=20, duration_s=100, privacy_high_fraction=0.3))
    assert {r.max_tokens for r in schedule} == {6}
    high = sum(r.privacy == "high" for r in schedule) / len(schedule)
    assert high == pytest.approx(0.3, abs=0.05)
    assert {r.privacy for r in build_schedule(scenario())} == {"high"}
    assert {r.privacy for r in build_schedule(scenario(privacy_high_fraction=0))} == {"none"}


def test_prompts_have_prompt_tokens_tokens_with_the_builtin_tokenizer() -> None:
    from transformers import AutoTokenizer

    from edgesplit.model.builtin import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:llama-tiny"))
    for word in PROMPT_WORDS:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    for word in FIRST_WORDS:
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    for request in build_schedule(scenario(prompt_tokens=24))[:20]:
        count = len(tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        assert count == 24
