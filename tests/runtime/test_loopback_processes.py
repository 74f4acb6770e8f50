"""Real `edgesplit node` processes on loopback with a tiny random Llama: the split equals one process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(400)]

SEGMENTS = [(0, 2), (2, 4), (4, 6)]  # llama-tiny: 4 layers -> 6 blocks
PROMPT = [5, 17, 42, 99, 7, 300]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgesplit.model.builtin import init_model

    return init_model(tmp_path_factory.mktemp("model") / "llama-tiny", "llama", "tiny", seed=1)


@pytest.fixture(scope="module")
def loopback_route(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route]:
    from edgesplit.node.launcher import spawn_node, stop_all

    workdir = tmp_path_factory.mktemp("nodes")
    nodes = [
        spawn_node(
            f"n{i}",
            workdir,
            model=str(tiny_llama),
            segments=[seg],
            extra_args=["--metrics-port", "0", "--threads", "1"],
        )
        for i, seg in enumerate(SEGMENTS)
    ]
    try:
        hops = tuple(
            Hop(n.node_id, n.wait_ready(300), s, e) for n, (s, e) in zip(nodes, SEGMENTS, strict=True)
        )
        yield Route(0, hops)
    finally:
        codes = stop_all(nodes, timeout_s=60)  # interpreter exit is slow on a loaded machine
        assert codes == [0, 0, 0], f"nodes did not shut down cleanly: {codes}"


def _reference(model_dir: Path, prompt: list[int], n: int) -> list[int]:
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model

    block_model = load_block_model(model_dir)
    return SegmentChain.from_block_model(block_model, [(0, block_model.num_blocks)]).generate(prompt, n)


async def _greedy(
    client: GrpcSegmentClient, route: Route, session: str, prompt: list[int], n: int
) -> list[int]:
    out = [(await client.run_step(route, ChainStep(session, tuple(prompt), 0), 30.0)).token_id]
    position = len(prompt)
    while len(out) < n:
        out.append((await client.run_step(route, ChainStep(session, (out[-1],), position), 30.0)).token_id)
        position += 1
    await client.end_session(route, session)
    return out


async def test_three_processes_match_single_process_greedy(tiny_llama: Path, loopback_route: Route) -> None:
    expected = _reference(tiny_llama, PROMPT, 16)
    assert len(set(expected)) > 2
    client = GrpcSegmentClient()
    try:
        assert await _greedy(client, loopback_route, "a", PROMPT, 16) == expected
        # 8 concurrent sessions with different prompts, all right
        prompts = [[(7 * i + j) % 500 for j in range(3 + i)] for i in range(8)]
        got = await asyncio.gather(
            *(_greedy(client, loopback_route, f"c{i}", p, 8) for i, p in enumerate(prompts))
        )
    finally:
        await client.close()
    assert got == [_reference(tiny_llama, p, 8) for p in prompts]


async def test_memory_flat_over_many_sequential_sessions(loopback_route: Route) -> None:
    admins = [NodeAdmin(h.address) for h in loopback_route.hops]
    client = GrpcSegmentClient()
    try:
        for i in range(30):  # warm-up: allocator pools, channel buffers
            await _greedy(client, loopback_route, f"w{i}", PROMPT, 4)
        before = [s.rss_bytes for s in await asyncio.gather(*(a.telemetry() for a in admins))]
        for i in range(120):  # 120 sessions x (prefill + 2 decode steps + end)
            await _greedy(client, loopback_route, f"m{i}", PROMPT, 3)
        after = await asyncio.gather(*(a.telemetry() for a in admins))
    finally:
        await client.close()
        for a in admins:
            await a.close()
    assert [s.active_sessions for s in after] == [0, 0, 0]
    growth = [a.rss_bytes - b for a, b in zip(after, before, strict=True)]
    assert max(growth) < 16 * 2**20, f"RSS grew by {growth} bytes over 120 sessions"


async def test_concurrent_sessions_travel_as_one_call_and_one_batch(
    tiny_llama: Path, loopback_route: Route
) -> None:
    """8 sessions in lockstep: one StepMany per round from the client, one forward pass per node and round."""
    rounds = 6
    prompts = [[(11 * i + 3 * j) % 500 for j in range(5)] for i in range(8)]  # one length: one prefill pass
    admins = [NodeAdmin(h.address) for h in loopback_route.hops]
    client = GrpcSegmentClient()
    try:
        before = [s.segments[0].steps for s in await asyncio.gather(*(a.telemetry() for a in admins))]
        got = await asyncio.gather(
            *(_greedy(client, loopback_route, f"b{i}", p, rounds) for i, p in enumerate(prompts))
        )
        after = [s.segments[0].steps for s in await asyncio.gather(*(a.telemetry() for a in admins))]
        calls = client.calls_sent
    finally:
        await client.close()
        for a in admins:
            await a.close()
    assert got == [_reference(tiny_llama, p, rounds) for p in prompts]
    assert calls == rounds  # not 8 x rounds
    assert [b - a for a, b in zip(before, after, strict=True)] == [rounds] * 3
