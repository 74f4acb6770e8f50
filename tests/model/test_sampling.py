"""Unit tier: greedy picks the argmax; top-p never leaves the nucleus; a seed fixes the draws."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.model.sampling import new_generator, sample_token
from edgesplit.model.steps import SamplingParams


@given(st.lists(st.integers(-2000, 2000), min_size=2, max_size=50, unique=True))
def test_greedy_is_argmax(values: list[int]) -> None:
    logits = torch.tensor(values, dtype=torch.float32) / 100  # distinct even in float32
    assert sample_token(logits, SamplingParams(), None) == values.index(max(values))


@settings(max_examples=50)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=30), st.floats(0.05, 0.99), st.integers(0, 2**31))
def test_top_p_draws_stay_in_the_nucleus(values: list[float], top_p: float, seed: int) -> None:
    logits = torch.tensor(values)
    params = SamplingParams(temperature=1.0, top_p=top_p, seed=seed)
    probs = torch.softmax(logits, -1)
    order = torch.argsort(probs, descending=True, stable=True)
    # The nucleus: most probable tokens until their mass reaches top_p (ties may enter in any order).
    cutoff = probs[order][(torch.cumsum(probs[order], 0) - probs[order] < top_p)].min()
    token = sample_token(logits, params, new_generator(params))
    assert probs[token] >= cutoff - 1e-7


def test_same_seed_same_draws() -> None:
    logits = torch.zeros(100)
    params = SamplingParams(temperature=1.0, seed=42)
    a, b = new_generator(params), new_generator(params)
    draws_a = [sample_token(logits, params, a) for _ in range(20)]
    assert draws_a == [sample_token(logits, params, b) for _ in range(20)]
    assert len(set(draws_a)) > 1  # 20 uniform draws over 100 tokens are not all equal
