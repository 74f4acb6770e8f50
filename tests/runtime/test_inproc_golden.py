"""The in-process client over real SegmentRunners equals the model's own one-segment chain."""

from __future__ import annotations

import pytest

from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.inproc import InprocSegmentClient

pytestmark = pytest.mark.anyio


async def test_inproc_three_segments_equal_one_segment_chain() -> None:
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model

    block_model = load_block_model(resolve_model("builtin:llama-tiny"))
    n = block_model.num_blocks
    prompt = [3, 14, 15, 92, 65]
    expected = SegmentChain.from_block_model(block_model, [(0, n)]).generate(prompt, 10)
    segments = [(0, 2), (2, n - 1), (n - 1, n)]
    client = InprocSegmentClient.from_model(block_model, segments)
    route = Route(0, tuple(Hop(f"n{i}", "", s, e) for i, (s, e) in enumerate(segments)))
    try:
        got = [(await client.run_step(route, ChainStep("s", tuple(prompt), 0), 10.0)).token_id]
        position = len(prompt)
        while len(got) < 10:
            got.append((await client.run_step(route, ChainStep("s", (got[-1],), position), 10.0)).token_id)
            position += 1
        await client.end_session(route, "s")
        assert client.held_sessions() == 0
    finally:
        await client.close()
    assert got == expected


def test_shard_source_builds_segments_that_match_the_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.shards import write_shards
    from edgesplit.model.steps import SegmentStep
    from edgesplit.node.loading import ModelSegmentSource, source_for

    model_dir = resolve_model("builtin:llama-tiny")
    write_shards(model_dir, tmp_path / "shards")
    shard_runner, shard_shape = source_for(None, tmp_path / "shards").load(2, 4)
    full_runner, full_shape = ModelSegmentSource(str(model_dir)).load(2, 4)
    assert shard_shape == full_shape and shard_shape.param_bytes > 0
    assert abs(sum(shard_shape.decode_share) - 1) < 1e-9
    x = torch.randn(3, full_shape.hidden_size or 0, generator=torch.Generator().manual_seed(0))
    a = shard_runner.step([SegmentStep("s", x, 0)])[0].hidden
    b = full_runner.step([SegmentStep("s", x, 0)])[0].hidden
    assert a is not None and b is not None and torch.equal(a, b)
