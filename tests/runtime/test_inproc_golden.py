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
