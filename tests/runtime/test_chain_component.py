"""A node's gRPC service on 127.0.0.1:0: chains, batching, fencing, bad tensors, drops, emulation."""

from __future__ import annotations

import asyncio

import pytest
import torch
from fakes import FakeRunner, fake_cluster, fake_reference

from edgesplit.errors import PlanRejectedError, SessionError, SessionNotFoundError
from edgesplit.transport.base import ChainStep
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.inproc import InprocSegmentClient

pytestmark = pytest.mark.anyio

N_BLOCKS = 6
SEGMENTS = [(0, 2), (2, 4), (4, 6)]


async def _greedy(client, route, session: str, prompt: list[int], n: int) -> list[int]:  # type: ignore[no-untyped-def]
    out: list[int] = []
    result = await client.run_step(route, ChainStep(session, tuple(prompt), 0), 10.0)
    out.append(result.token_id)
    position = len(prompt)
    for _ in range(n - 1):
        result = await client.run_step(route, ChainStep(session, (out[-1],), position), 10.0)
        out.append(result.token_id)
        position += 1
    return out


def _reference(prompt: list[int], n: int) -> list[int]:
    return fake_reference(prompt, n, N_BLOCKS)


async def test_grpc_chain_matches_monolithic_and_inproc() -> None:
    prompt, n = [3, 1, 4, 1, 5], 12
    expected = _reference(prompt, n)
    assert len(set(expected)) > 1  # the toy model does not collapse to a constant
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, _nodes):
        client = GrpcSegmentClient()
        try:
            got = await _greedy(client, route, "s1", prompt, n)
            result = await client.run_step(route, ChainStep("s1", (got[-1],), len(prompt) + n - 1), 10.0)
        finally:
            await client.close()
    assert got == expected
    assert [t.node_id for t in result.timings] == ["n0", "n1", "n2"]
    assert all(t.compute_s > 0 for t in result.timings)
    inproc = InprocSegmentClient({k: FakeRunner(*k, N_BLOCKS) for k in SEGMENTS})
    try:
        assert await _greedy(inproc, route, "s1", prompt, n) == expected
    finally:
        await inproc.close()


async def test_wrong_position_is_session_not_found_and_reprefill_recovers() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, _nodes):
        client = GrpcSegmentClient()
        try:
            with pytest.raises(SessionNotFoundError):
                await client.run_step(route, ChainStep("ghost", (1,), 7), 5.0)
            await client.run_step(route, ChainStep("s", (1, 2, 3), 0), 5.0)
            with pytest.raises(SessionNotFoundError):
                await client.run_step(route, ChainStep("s", (1,), 9), 5.0)
            again = await client.run_step(route, ChainStep("s", (1, 2, 3), 0), 5.0)
            assert again.token_id == _reference([1, 2, 3], 1)[0]
        finally:
            await client.close()


async def test_stale_epoch_is_refused() -> None:
    from dataclasses import replace

    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, _nodes):
        client = GrpcSegmentClient()
        try:
            with pytest.raises(PlanRejectedError):
                await client.run_step(replace(route, epoch=5), ChainStep("s", (1,), 0), 5.0)
        finally:
            await client.close()


async def test_bad_tensor_fails_only_its_session() -> None:
    from edgesplit.model.steps import SamplingParams
    from edgesplit.transport.peers import PeerPool
    from edgesplit.wire.messages import StepEnvelope
    from edgesplit.wire.stubs import encode_step

    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, _nodes):
        client = GrpcSegmentClient()
        peers = PeerPool()
        try:
            await client.start()
            good = asyncio.create_task(_greedy(client, route, "good", [1, 2, 3], 6))
            bad_inputs = {
                "shape": torch.zeros(2, 9),  # hidden is 8
                "dtype": torch.zeros(2, 8, dtype=torch.float16),
                "ids": torch.tensor([1, 2]),
            }
            for name, inputs in bad_inputs.items():
                env = StepEnvelope(
                    f"bad-{name}",
                    10_000,
                    route,
                    1,
                    0,
                    inputs,
                    SamplingParams(),
                    client.reply_address,
                    "gateway",
                )
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                client._pending[10_000] = (f"bad-{name}", future)
                await peers.node(route.hops[1].address).send_step(encode_step(env), 5.0)
                outcome, _arrived = await asyncio.wait_for(future, 5.0)
                assert outcome.error_code == SessionError.code, (name, outcome)
                assert outcome.failed_node_id == "n1"
            assert await good == _reference([1, 2, 3], 6)
        finally:
            await peers.close()
            await client.close()


async def test_concurrent_sessions_are_batched() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS, delay_s=0.02) as (route, nodes):
        client = GrpcSegmentClient()
        try:
            prompts = {f"s{i}": [i + 1, i + 2] for i in range(8)}
            results = await asyncio.gather(*(_greedy(client, route, s, p, 5) for s, p in prompts.items()))
        finally:
            await client.close()
    for (_s, prompt), got in zip(prompts.items(), results, strict=True):
        assert got == _reference(prompt, 5)
    batches = nodes[1].source.runners[(2, 4)].batches
    assert max(batches) >= 4, batches
    assert len(batches) < 8 * 5  # fewer forward passes than steps


async def test_end_session_and_idle_timeout_free_caches() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS, idle_timeout_s=0.3) as (route, nodes):
        client = GrpcSegmentClient()
        try:
            for i in range(20):
                await client.run_step(route, ChainStep(f"s{i}", (1, 2), 0), 5.0)
                await client.end_session(route, f"s{i}")
            held = [len(r.state) for n in nodes for r in n.source.runners.values()]
            assert held == [0, 0, 0]
            await client.run_step(route, ChainStep("idle", (1, 2), 0), 5.0)
            assert nodes[0].source.runners[(0, 2)].state
            deadline = asyncio.get_running_loop().time() + 5
            while any(r.state for n in nodes for r in n.source.runners.values()):
                assert asyncio.get_running_loop().time() < deadline, "idle session never reaped"
                await asyncio.sleep(0.05)
        finally:
            await client.close()


async def test_full_queue_is_a_capacity_error_not_a_hang() -> None:
    from edgesplit.errors import CapacityError

    async with fake_cluster([(0, 6)], N_BLOCKS, delay_s=0.2, max_queued_steps=1) as (route, _nodes):
        client = GrpcSegmentClient()
        try:
            results = await asyncio.gather(
                *(client.run_step(route, ChainStep(f"q{i}", (1, 2), 0), 5.0) for i in range(4)),
                return_exceptions=True,
            )
        finally:
            await client.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors and all(isinstance(e, CapacityError) for e in errors), results
    assert len(errors) < 4
