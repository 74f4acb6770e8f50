"""Concurrent sessions travel together: one StepMany per loop turn from the client, one batch per node."""

from __future__ import annotations

import asyncio

import pytest
import torch
from fakes import FakeRunner, fake_cluster, fake_reference

from edgesplit.model.steps import SegmentStep
from edgesplit.node.segments import HostedSegment, SegmentShape
from edgesplit.node.worker import ComputeWorker
from edgesplit.transport.base import ChainStep, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient

pytestmark = pytest.mark.anyio

N_BLOCKS = 6
SEGMENTS = [(0, 2), (2, 4), (4, N_BLOCKS)]
SESSIONS = 8
NEW_TOKENS = 5


def _reference(prompt: list[int], n: int) -> list[int]:
    return fake_reference(prompt, n, N_BLOCKS)


async def _lockstep(
    client: GrpcSegmentClient, route: Route, prompts: dict[str, list[int]]
) -> list[list[int]]:
    """Every session prefills, then decodes, each in its own task (as gateway requests do)."""

    async def one(sid: str, prompt: list[int]) -> list[int]:
        result = await client.run_step(route, ChainStep(sid, tuple(prompt), 0), 10.0)
        out, position = [result.token_id], len(prompt)
        for _ in range(NEW_TOKENS - 1):
            result = await client.run_step(route, ChainStep(sid, (out[-1],), position), 10.0)
            out.append(result.token_id)
            position += 1
        return out

    return await asyncio.gather(*(one(s, p) for s, p in prompts.items()))


def _prompts() -> dict[str, list[int]]:
    return {f"s{i}": [i + 1, (3 * i) % 7 + 2, i % 3 + 1] for i in range(SESSIONS)}


async def test_concurrent_steps_leave_as_one_call_and_run_as_one_batch_per_node() -> None:
    prompts = _prompts()
    expected = [_reference(p, NEW_TOKENS) for p in prompts.values()]
    assert len({tuple(e) for e in expected}) > 1  # sessions differ, so a mix-up would show
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        client = GrpcSegmentClient()
        try:
            got = await _lockstep(client, route, prompts)
            calls = client.calls_sent
        finally:
            await client.close()
    assert got == expected
    # One call per round (prefill + each decode step) instead of one per session and round.
    assert calls == NEW_TOKENS
    for node, segment in zip(nodes, SEGMENTS, strict=True):
        assert node.source.runners[segment].batches == [SESSIONS] * NEW_TOKENS, node.agent.address


async def test_micro_batch_groups_split_a_round_into_near_equal_calls() -> None:
    prompts = _prompts()
    expected = [_reference(p, NEW_TOKENS) for p in prompts.values()]
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        client = GrpcSegmentClient(max_steps_per_call=3)
        try:
            got = await _lockstep(client, route, prompts)
            calls = client.calls_sent
        finally:
            await client.close()
    assert got == expected
    assert calls == 3 * NEW_TOKENS  # 8 steps at most 3 a call: 3 calls (3 + 3 + 2)
    first = nodes[0].source.runners[SEGMENTS[0]].batches
    assert sum(first) == SESSIONS * NEW_TOKENS and max(first) <= SESSIONS


async def test_worker_hands_one_turns_submissions_over_as_one_batch() -> None:
    runner = FakeRunner(0, N_BLOCKS, N_BLOCKS, delay_s=0.01)
    shape = SegmentShape(0, N_BLOCKS, 8, torch.float32)
    segment = HostedSegment(shape, runner)
    worker = ComputeWorker()
    try:
        for _ in range(3):  # the compute thread is idle each time the turn's first step arrives
            futures = [
                worker.submit(segment, SegmentStep(f"w{i}", torch.tensor([i + 1, 2]), 0)) for i in range(16)
            ]
            done = await asyncio.wait_for(asyncio.gather(*futures), 10)
            assert all(d.error is None and d.batch_size == 16 for d in done)
        assert runner.batches == [16, 16, 16]
        assert worker.units == 3 and worker.batches == 3
        # A call is ordered after the steps submitted before it in the same turn.
        step = worker.submit(segment, SegmentStep("late", torch.tensor([5]), 0))
        held = worker.call(lambda: "late" in runner.state)
        assert await asyncio.wait_for(held, 10) is True
        assert (await step).error is None
    finally:
        worker.close()


@pytest.mark.parametrize("defer_turns", [1, 3])
async def test_outbox_waits_the_given_loop_turns_for_stragglers(defer_turns: int) -> None:
    from edgesplit.transport.outbox import Outbox

    sent: list[list[int]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def send(items: list[int], timeout_s: float) -> None:
        sent.append(items)

    def spawn(coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    box: Outbox[int] = Outbox(send, spawn, defer_turns=defer_turns)
    futures = []
    for item in range(3):  # one submission per loop turn
        futures.append(box.submit(item, 1.0))
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert [i for items in sent for i in items] == [0, 1, 2]
    if defer_turns == 1:
        assert len(sent) > 1, sent  # the third submission came too late
    else:
        assert sent == [[0, 1, 2]]
