"""Turning one position's logits into a token: greedy, or temperature + top-p with a seeded generator.

Pure torch over one (V,) vector; the caller owns the per-session generator.
"""

from __future__ import annotations

import torch

from edgesplit.model.steps import SamplingParams


def new_generator(params: SamplingParams) -> torch.Generator:
    """A CPU generator seeded from ``params.seed`` (a fresh random seed when None)."""
    generator = torch.Generator()
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token for logits (V,): argmax when greedy, else a draw from the top-p nucleus.

    The nucleus is the smallest set of most-probable tokens whose probability reaches ``top_p``
    (always at least one token), as HF's TopPLogitsWarper keeps it.
    """
    if params.greedy:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = torch.where(before < params.top_p, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())
