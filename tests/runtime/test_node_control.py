"""A node's control and admin surface over real gRPC: plans by epoch, emulation, telemetry, health."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time

import pytest
from fakes import fake_cluster

from edgesplit.errors import CapacityError, ConfigError, PlanRejectedError
from edgesplit.node.config import EmulationConfig
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan, assignment_of
from edgesplit.orchestrator.plans import PlanSegment as OrchSegment
from edgesplit.orchestrator.signing import SignedMessage, generate_key, public_key_text, sign
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import EpochState, PlanSegment, PlanSpec

pytestmark = pytest.mark.anyio

N_BLOCKS = 6
SEGMENTS = [(0, 2), (2, 4), (4, 6)]


KEY = generate_key()
SIGNED = {"orchestrator_public_key": public_key_text(KEY)}


def signed(kind: MessageKind, epoch: int, *segments: tuple[str, int, int]) -> SignedMessage:
    plan = None
    if kind is MessageKind.PREPARE:
        plan = Plan(epoch, assignment_of([OrchSegment(n, s, e) for n, s, e in segments]))
    return sign(ControlMessage(kind, epoch, plan), KEY)


async def prepare(admin: NodeAdmin, message: SignedMessage) -> EpochState:
    return await admin.prepare_raw(message.payload, message.signature)


async def commit(admin: NodeAdmin, message: SignedMessage) -> EpochState:
    return await admin.commit(message_epoch(message), signed=message.payload, signature=message.signature)


async def release(admin: NodeAdmin, message: SignedMessage) -> EpochState:
    return await admin.release(message_epoch(message), signed=message.payload, signature=message.signature)


def message_epoch(message: SignedMessage) -> int:
    return int(json.loads(message.payload)["epoch"])


async def test_prepare_commit_release_moves_a_segment_between_epochs() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS, **SIGNED) as (route, nodes):
        admins = [NodeAdmin(n.address) for n in nodes]
        client = GrpcSegmentClient()
        try:
            # epoch 1: n0 takes 0:3, n2 takes 3:6; n1 holds nothing.
            plan = signed(MessageKind.PREPARE, 1, ("n0", 0, 3), ("n2", 3, 6))
            states = await asyncio.gather(*(prepare(a, plan) for a in admins))
            assert [s.segments for s in states] == [((0, 3),), (), ((3, 6),)]
            await asyncio.gather(*(commit(a, signed(MessageKind.COMMIT, 1)) for a in admins))
            new_route = Route(1, (Hop("n0", nodes[0].address, 0, 3), Hop("n2", nodes[2].address, 3, 6)))
            old = await client.run_step(route, ChainStep("old", (1, 2), 0), 5.0)  # epoch 0 still serves
            new = await client.run_step(new_route, ChainStep("new", (1, 2), 0), 5.0)
            assert old.token_id == new.token_id  # same model, different cut
            await asyncio.gather(*(release(a, signed(MessageKind.RELEASE, 0)) for a in admins))
            with pytest.raises(PlanRejectedError):
                await client.run_step(route, ChainStep("old2", (1, 2), 0), 5.0)
            assert (2, 4) not in {k for k in nodes[1].agent.service._segments}
            with pytest.raises(PlanRejectedError):  # epochs never go back
                await prepare(admins[0], signed(MessageKind.PREPARE, 1, ("n0", 0, 6)))
            with pytest.raises(PlanRejectedError):  # commit needs a prepare
                await commit(admins[0], signed(MessageKind.COMMIT, 7))
        finally:
            await client.close()
            for a in admins:
                await a.close()


async def test_bad_signature_old_epoch_replayed_commit_and_unsigned_are_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DESIGN §4.6: each refusal is a PlanRejectedError naming why, is logged, and serving continues."""
    async with fake_cluster(SEGMENTS, N_BLOCKS, **SIGNED) as (route, nodes):
        admin = NodeAdmin(nodes[0].address)
        client = GrpcSegmentClient()
        try:
            await prepare(admin, signed(MessageKind.PREPARE, 2, ("n0", 0, 6)))
            await commit(admin, signed(MessageKind.COMMIT, 2))
            forged = sign(ControlMessage(MessageKind.PREPARE, 3, Plan(3, ("n0",) * N_BLOCKS)), generate_key())
            cases = [
                ("signature", prepare(admin, forged)),
                ("already seen", prepare(admin, signed(MessageKind.PREPARE, 1, ("n0", 0, 6)))),
                ("replayed commit", commit(admin, signed(MessageKind.COMMIT, 2))),
                ("unsigned", admin.prepare(PlanSpec(5, (PlanSegment("n0", 0, 6),)))),
                ("unsigned", admin.commit(2)),
                ("cannot be used as a commit", commit(admin, signed(MessageKind.RELEASE, 2))),
            ]
            for why, call in cases:
                with caplog.at_level(logging.WARNING, logger="edgesplit.node.control_gate"):
                    caplog.clear()
                    with pytest.raises(PlanRejectedError, match=why):
                        await call
                    assert any(why in r.getMessage() for r in caplog.records), why
            # Still serving epoch 0 (n0..n2) and the committed epoch 2 (n0 alone).
            assert (await client.run_step(route, ChainStep("s", (1,), 0), 5.0)).token_id >= 0
            whole = Route(2, (Hop("n0", nodes[0].address, 0, N_BLOCKS),))
            assert (await client.run_step(whole, ChainStep("t", (1,), 0), 5.0)).token_id >= 0
            assert nodes[0].agent.service.gate.gate is not None
            assert nodes[0].agent.service.gate.gate.active_epoch == 2
        finally:
            await client.close()
            await admin.close()


async def test_a_node_without_a_key_refuses_unsigned_plans_unless_allowed() -> None:
    async with fake_cluster(SEGMENTS[:1], N_BLOCKS) as (_, nodes):
        admin = NodeAdmin(nodes[0].address)
        try:
            with pytest.raises(PlanRejectedError, match="no orchestrator_public_key"):
                await admin.prepare(PlanSpec(1, (PlanSegment("n0", 0, 2),)))
        finally:
            await admin.close()
    async with fake_cluster(SEGMENTS[:1], N_BLOCKS, allow_unsigned_plans=True) as (_, nodes):
        admin = NodeAdmin(nodes[0].address)
        try:
            assert (await admin.prepare(PlanSpec(1, (PlanSegment("n0", 0, 2),)))).epoch == 1
            assert (await admin.commit(1)).epoch == 1
        finally:
            await admin.close()


async def test_memory_cap_refuses_a_plan_and_keeps_serving() -> None:
    async with fake_cluster(SEGMENTS, N_BLOCKS, **SIGNED) as (route, nodes):
        admin = NodeAdmin(nodes[0].address)
        client = GrpcSegmentClient()
        try:
            await admin.set_emulation(EmulationConfig(memory_cap_bytes=2500))  # fake: 1000 bytes/block
            with pytest.raises(CapacityError):
                await prepare(admin, signed(MessageKind.PREPARE, 1, ("n0", 0, 4), ("n1", 4, 6)))
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
