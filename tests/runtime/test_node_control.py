"""A node's control and admin surface over real gRPC: plans by epoch, emulation, telemetry, health."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from fakes import fake_cluster

from edgesplit.errors import CapacityError, ConfigError, PlanRejectedError
from edgesplit.node.config import EmulationConfig
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import PlanSegment, PlanSpec

pytestmark = pytest.mark.anyio

N_BLOCKS = 6
SEGMENTS = [(0, 2), (2, 4), (4, 6)]


async def test_prepare_commit_release_moves_a_segment_between_epochs() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        admins = [NodeAdmin(n.address) for n in nodes]
        client = GrpcSegmentClient()
        try:
            # epoch 1: n0 takes 0:3, n2 takes 3:6; n1 holds nothing.
            plan = PlanSpec(1, (PlanSegment("n0", 0, 3), PlanSegment("n2", 3, 6)))
            states = await asyncio.gather(*(a.prepare(plan) for a in admins))
            assert [s.segments for s in states] == [((0, 3),), (), ((3, 6),)]
            await asyncio.gather(*(a.commit(1) for a in admins))
            new_route = Route(1, (Hop("n0", nodes[0].address, 0, 3), Hop("n2", nodes[2].address, 3, 6)))
            old = await client.run_step(route, ChainStep("old", (1, 2), 0), 5.0)  # epoch 0 still serves
            new = await client.run_step(new_route, ChainStep("new", (1, 2), 0), 5.0)
            assert old.token_id == new.token_id  # same model, different cut
            await asyncio.gather(*(a.release(0) for a in admins))
            with pytest.raises(PlanRejectedError):
                await client.run_step(route, ChainStep("old2", (1, 2), 0), 5.0)
            assert (2, 4) not in {k for k in nodes[1].agent.service._segments}
            with pytest.raises(PlanRejectedError):  # epochs never go back
                await admins[0].prepare(PlanSpec(0, (PlanSegment("n0", 0, 6),)))
            with pytest.raises(PlanRejectedError):  # commit needs a prepare
                await admins[0].commit(7)
        finally:
            await client.close()
            for a in admins:
                await a.close()


async def test_memory_cap_refuses_a_plan_and_keeps_serving() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        admin = NodeAdmin(nodes[0].address)
        client = GrpcSegmentClient()
        try:
            await admin.set_emulation(EmulationConfig(memory_cap_bytes=2500))  # fake: 1000 bytes/block
            with pytest.raises(CapacityError):
                await admin.prepare(PlanSpec(1, (PlanSegment("n0", 0, 4),)))
            assert (await client.run_step(route, ChainStep("s", (1,), 0), 5.0)).token_id >= 0
            with pytest.raises(ConfigError):
                await admin._stub.set_emulation('{"speed_factor": -1}', 5.0)
        finally:
            await client.close()
            await admin.close()


async def test_telemetry_health_and_speed_factor() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS) as (route, nodes):
        admin = NodeAdmin(nodes[1].address)
        client = GrpcSegmentClient()
        try:
            assert await admin.wait_serving(5.0)
            for i in range(5):
                await client.run_step(route, ChainStep(f"s{i}", (1, 2, 3), 0), 5.0)
            snap = await admin.telemetry()
            assert snap.node_id == "n1" and snap.rss_bytes > 10_000_000
            assert snap.active_sessions == 5 and snap.epochs == (0,)
            (seg,) = snap.segments
            assert (seg.start, seg.end, seg.steps) == (2, 4, 5) and seg.prefill_s_per_token > 0
            assert snap.activation_bytes_in > 5 * 3 * 8 * 4  # five (3, 8) float32 tensors at least
            assert set(snap.block_prefill_s) == {2, 3} == snap.loaded_blocks  # even split (no FLOPs known)
            assert sum(snap.block_prefill_s.values()) == pytest.approx(seg.prefill_s_per_token)
            assert 0 < snap.busy_s_total < snap.uptime_s and snap.mem_available_bytes > 0
            assert (await admin.telemetry()).seq == snap.seq + 1

            async def step_time(tag: str) -> tuple[float, float]:
                """Median wall time of a 3-token prefill, and node n1's reported compute time."""
                times, n1 = [], []
                for i in range(5):
                    t0 = time.perf_counter()
                    result = await client.run_step(route, ChainStep(f"{tag}{i}", (1, 2, 3), 0), 5.0)
                    times.append(time.perf_counter() - t0)
                    n1.append(result.timings[1].compute_s)
                return statistics.median(times), statistics.median(n1)

            # profile block 2 at 30 ms per prompt token: 3 tokens -> 90 ms; speed 0.5 -> 180 ms
            profile = {"block_profile": {2: {"prefill_ms_per_token": 30.0}}, "speed_factor": 0.5}
            base, base_n1 = await step_time("a")
            await admin.set_emulation(EmulationConfig.model_validate(profile))
            slow, slow_n1 = await step_time("b")
            assert 0.18 <= slow_n1 < 0.18 * 1.2, slow_n1  # the node really took the emulated time
            # the wall clock agrees: n1's real compute is replaced by the emulated 180 ms
            assert 0.18 * 0.8 <= slow - base + base_n1 < 0.18 * 1.2, (base, base_n1, slow)
            await admin.set_emulation(EmulationConfig())
            assert (await step_time("c"))[1] < 0.05
        finally:
            await client.close()
            await admin.close()


async def test_prometheus_endpoint_serves_node_metrics() -> None:
    import urllib.request

    async with fake_cluster([(0, N_BLOCKS)], N_BLOCKS, metrics_port=0) as (route, nodes):
        client = GrpcSegmentClient()
        admin = NodeAdmin(nodes[0].address)
        try:
            await client.run_step(route, ChainStep("s", (1, 2, 3), 0), 5.0)
            await admin.telemetry()  # refreshes the gauges
            port = nodes[0].agent.metrics_port
            assert port
            url = f"http://127.0.0.1:{port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        finally:
            await client.close()
            await admin.close()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    assert samples["edgesplit_node_active_sessions"] == 1.0
    assert samples['edgesplit_activation_bytes_total{direction="in"}'] > 0
    assert samples['edgesplit_node_steps_total{outcome="ok"}'] == 1.0
    assert samples["edgesplit_node_resident_memory_bytes"] > 10_000_000
    assert 'edgesplit_stage_compute_seconds_count{segment="0:6"}' in samples
