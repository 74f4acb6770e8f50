"""Reference runs of the unsplit HF model: teacher-forced logits and greedy `generate` tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from edgesplit.model.chain import SegmentChain
from edgesplit.model.steps import SegmentStep

DECODE_STEPS = 32


@dataclass(frozen=True)
class Reference:
    """What HF computes for one prompt: prefill logits (T, V), then one (V,) per decode step."""

    prompt: list[int]
    prefill_logits: torch.Tensor
    decode_logits: list[torch.Tensor]
    tokens: list[int]
    """Greedy tokens from ``model.generate`` (EOS disabled so all steps run)."""


def hf_reference(checkpoint: Path, prompt: list[int], steps: int = DECODE_STEPS) -> Reference:
    """Run the checkpoint as one HF model with its own cache: the ground truth for split runs."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    model.generation_config.eos_token_id = None
    ids = torch.tensor([prompt])
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=steps, do_sample=False, pad_token_id=0)[
            0, len(prompt) :
        ]
        tokens = generated.tolist()
        out = model(ids, use_cache=True)
        prefill, past = out.logits[0], out.past_key_values
        decode = []
        for token in tokens[:-1]:
            out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
            decode.append(out.logits[0, -1])
            past = out.past_key_values
    return Reference(prompt, prefill, decode, tokens)


def chain_logits(
    chain: SegmentChain, session: str, prompt: list[int], forced: list[int]
) -> list[torch.Tensor]:
    """Logits of the chain for the prompt (T, V) and then for each forced token (1, V)."""
    logits = []
    inputs, position = torch.tensor(prompt), 0
    for token in [None, *forced]:
        if token is not None:
            inputs = torch.tensor([token])
        x: torch.Tensor = inputs
        for runner in chain.runners:
            out = runner.step([SegmentStep(session, x, position, want_logits=True)])[0]
            assert out.error is None, out.error
            x = out.hidden if out.hidden is not None else x
        assert out.logits is not None
        logits.append(out.logits)
        position += len(inputs)
    return logits
