"""An emulated 10 Mbit/s, 40 ms RTT link between two nodes adds the expected time to each step."""

from __future__ import annotations

import time

import pytest
from fakes import fake_cluster

from edgesplit.node.config import EmulationConfig
from edgesplit.transport.base import ChainStep
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin

pytestmark = pytest.mark.anyio

N_BLOCKS = 6
SEGMENTS = [(0, 2), (2, 4), (4, 6)]
LINK = {"links": {"n1": {"bandwidth_mbps": 10.0, "rtt_ms": 40.0}}}


@pytest.mark.parametrize("prompt_tokens", [1, 1500])
async def test_hop_time_over_emulated_link_matches_expected(prompt_tokens: int) -> None:
    """Expected hop = RTT/2 + bytes/bandwidth, with the bytes the sender counted in telemetry."""
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        admin = NodeAdmin(nodes[0].address)
        client = GrpcSegmentClient()
        prompt = tuple(i % 30 for i in range(prompt_tokens))
        counter = iter(range(1000))

        async def one_step() -> tuple[float, int]:
            before = (await admin.telemetry()).activation_bytes_out
            t0 = time.perf_counter()
            await client.run_step(route, ChainStep(f"s{next(counter)}", prompt, 0), 10.0)
            took = time.perf_counter() - t0
            return took, (await admin.telemetry()).activation_bytes_out - before

        shaped_config = EmulationConfig.model_validate(LINK)
        base, shaped = [], []
        try:
            await one_step()  # warm up channels
            for _ in range(9):  # interleaved, so machine noise hits both alike
                await admin.set_emulation(EmulationConfig())
                base.append(await one_step())
                await admin.set_emulation(shaped_config)
                shaped.append(await one_step())
        finally:
            await client.close()
            await admin.close()
    nbytes = shaped[0][1]
    assert nbytes == base[0][1] and nbytes > prompt_tokens * 8 * 4  # (T, 8) float32 plus framing
    expected = 0.020 + nbytes * 8 / 10e6
    # Scheduling noise on a shared machine only ever adds time: compare the least-disturbed runs. The
    # link must never be faster than emulated; a wake-up may come one scheduling quantum (~10 ms) late.
    measured = min(t for t, _ in shaped) - min(t for t, _ in base)
    assert 0.9 * expected <= measured <= 1.2 * expected + 0.010, (measured, expected, nbytes)


async def test_no_link_delay_to_the_node_itself() -> None:
    """The gateway on the node that runs the head pays no link to itself; another source does."""
    slow_default = EmulationConfig.model_validate({"default_link": {"rtt_ms": 300.0}})
    async with fake_cluster([(0, N_BLOCKS)], N_BLOCKS) as (route, nodes):
        admin = NodeAdmin(nodes[0].address)
        local, remote = GrpcSegmentClient(source_node_id="n0"), GrpcSegmentClient(source_node_id="gw")
        try:
            await admin.set_emulation(slow_default)
            t0 = time.perf_counter()
            await local.run_step(route, ChainStep("a", (1, 2), 0), 5.0)
            local_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await remote.run_step(route, ChainStep("b", (1, 2), 0), 5.0)
            remote_s = time.perf_counter() - t0
        finally:
            await local.close()
            await remote.close()
            await admin.close()
    assert local_s < 0.1 <= 0.15 <= remote_s, (local_s, remote_s)
