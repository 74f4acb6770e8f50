"""Golden tier: any chain of segments computes what the unsplit HF model computes (fp32, ≤ 1e-4)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from golden import DECODE_STEPS, Reference, chain_logits, hf_reference
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from model_factories import FAMILIES, make_checkpoint

from edgesplit.model.chain import SegmentChain
from edgesplit.model.loader import BlockModel, load_block_model

TOLERANCE = 1e-4
PROMPT = [2, 11, 40, 7, 19, 5, 33, 8, 21, 14]


@pytest.fixture(scope="module")
def loaded(checkpoints: dict[str, Path]) -> dict[str, tuple[BlockModel, Reference]]:
    return {f: (load_block_model(checkpoints[f]), hf_reference(checkpoints[f], PROMPT)) for f in FAMILIES}


def segments_from_cuts(cuts: set[int], num_blocks: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted(cuts), num_blocks]
    return list(itertools.pairwise(bounds))


def check_chain(block_model: BlockModel, ref: Reference, segments: list[tuple[int, int]]) -> None:
    chain = SegmentChain.from_block_model(block_model, segments)
    logits = chain_logits(chain, "s", ref.prompt, ref.tokens[:-1])
    assert (logits[0] - ref.prefill_logits).abs().max().item() <= TOLERANCE, f"prefill differs for {segments}"
    for step, (ours, theirs) in enumerate(zip(logits[1:], ref.decode_logits, strict=True)):
        diff = (ours[0] - theirs).abs().max().item()
        assert diff <= TOLERANCE, f"decode step {step} differs by {diff} for {segments}"
    assert chain.generate(ref.prompt, DECODE_STEPS, session_id="g") == ref.tokens, (
        f"greedy differs for {segments}"
    )


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@example(data=None)  # every block its own segment; the cut right after the embedding; right before the head
def test_random_cuts_match_unsplit_model(
    family: str, loaded: dict[str, tuple[BlockModel, Reference]], data: st.DataObject | None
) -> None:
    block_model, ref = loaded[family]
    n = block_model.num_blocks
    if data is None:
        for cuts in (set(range(1, n)), {1}, {n - 1}):
            check_chain(block_model, ref, segments_from_cuts(cuts, n))
        return
    cuts = data.draw(st.sets(st.integers(1, n - 1)), label="cuts")
    check_chain(block_model, ref, segments_from_cuts(cuts, n))


def test_reference_runs_past_the_sliding_window(loaded: dict[str, tuple[BlockModel, Reference]]) -> None:
    """The mistral/qwen2 fixtures use a 16-token window; the golden run must be longer to test it."""
    block_model, _ = loaded["mistral"]
    assert block_model.adapter.sliding_window(0) == 16
    assert len(PROMPT) + DECODE_STEPS > 16
    logits = torch.stack(loaded["mistral"][1].decode_logits)
    assert torch.isfinite(logits).all()


def test_generic_adapter_splits_a_family_without_its_own(tmp_path: Path) -> None:
    """GPT-NeoX has no adapter of its own: the generic one finds its layers and stays exact."""
    checkpoint = make_checkpoint(tmp_path / "neox", "gpt_neox", n_layers=2)
    block_model = load_block_model(checkpoint)
    assert block_model.adapter.family == "generic" and block_model.num_blocks == 4
    ref = hf_reference(checkpoint, PROMPT, steps=8)
    for cuts in ({1, 2, 3}, {2}):
        chain = SegmentChain.from_block_model(block_model, segments_from_cuts(cuts, 4))
        logits = chain_logits(chain, "s", ref.prompt, ref.tokens[:-1])
        assert (logits[0] - ref.prefill_logits).abs().max().item() <= TOLERANCE
        assert all(
            (a[0] - b).abs().max().item() <= TOLERANCE
            for a, b in zip(logits[1:], ref.decode_logits, strict=True)
        )
        assert chain.generate(ref.prompt, 8, session_id="g") == ref.tokens
