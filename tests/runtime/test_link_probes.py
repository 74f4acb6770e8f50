"""Link probes between real node agents measure the emulated link's RTT and bandwidth, through the
same shaping the data plane uses, and follow a change of the link at run time."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from fakes import fake_cluster

from edgesplit.node.config import EmulationConfig
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import LinkProbeResult

pytestmark = pytest.mark.anyio

SEGMENTS = [(0, 2), (2, 4)]


def link(mbps: float, rtt_ms: float) -> EmulationConfig:
    return EmulationConfig.model_validate({"links": {"n1": {"bandwidth_mbps": mbps, "rtt_ms": rtt_ms}}})


async def probes_after(
    admin: NodeAdmin, peers: dict[str, str], after: int, count: int
) -> list[LinkProbeResult]:
    """Wait (bounded) until ``count`` bandwidth-carrying results newer than seq ``after`` arrived."""
    deadline = time.monotonic() + 30
    while True:
        snap = await admin.telemetry(peers=peers)
        fresh = [p for p in snap.link_probes if p.seq > after and p.peer == "n1" and p.bandwidth_bps > 0]
        if len(fresh) >= count:
            return fresh
        assert time.monotonic() < deadline, f"only {len(fresh)} probe results in 30 s"
        await asyncio.sleep(0.2)


async def test_probes_measure_rtt_and_bandwidth_and_follow_a_change() -> None:
    async with fake_cluster(SEGMENTS, 4) as (_, nodes):
        peers = {"n0": nodes[0].address, "n1": nodes[1].address}
        admin = NodeAdmin(nodes[0].address)
        try:
            await admin.set_emulation(link(40.0, 20.0))
            before = await probes_after(admin, peers, 0, 3)
            rtt = statistics.median(p.rtt_s for p in before)
            bandwidth = statistics.median(p.bandwidth_bps for p in before)
            # The probe pays RTT/2 out on n0's shaped link; n1 answers over its own (unshaped) link.
            assert 0.010 <= rtt <= 0.030, rtt
            assert bandwidth == pytest.approx(40e6, rel=0.35), bandwidth

            await admin.set_emulation(link(5.0, 20.0))
            last = max(p.seq for p in before)
            after = await probes_after(admin, peers, last, 3)
            collapsed = statistics.median(p.bandwidth_bps for p in after[-3:])
            assert collapsed == pytest.approx(5e6, rel=0.35), collapsed
            # Cheap: a bandwidth probe is sized for ~20 ms on the wire, not megabytes at 5 Mbit/s.
            assert all(p.probe_bytes <= 64 * 1024 for p in after[-2:]), [p.probe_bytes for p in after]
        finally:
            await admin.close()


async def test_a_node_without_peers_probes_nothing() -> None:
    async with fake_cluster(SEGMENTS, 4) as (_, nodes):
        admin = NodeAdmin(nodes[0].address)
        try:
            await asyncio.sleep(1.0)
            assert (await admin.telemetry()).link_probes == ()
        finally:
            await admin.close()


class _Shaper:
    async def transmit(self, nbytes: int) -> float:
        return 0.0


class _Stub:
    def __init__(self, calls: list[str], peer: str) -> None:
        self.calls, self.peer = calls, peer

    async def probe(self, from_node_id: str, payload: bytes, timeout_s: float) -> int:
        self.calls.append(self.peer)
        return len(payload)


class _Pool:
    """Unshaped links; records which peer each probe went to."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def link(self, peer: str) -> _Shaper:
        return _Shaper()

    def node(self, address: str) -> _Stub:
        return _Stub(self.calls, address)


async def test_a_big_cluster_is_probed_in_turns() -> None:
    from edgesplit.node.probes import LinkProber, ProbeSettings

    pool = _Pool()
    settings = ProbeSettings(period_s=0.05, max_rounds_per_period=3)
    prober = LinkProber("me", pool, settings)  # type: ignore[arg-type]
    prober.set_peers({f"p{i}": f"p{i}" for i in range(12)} | {"me": "self"})
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(0.4)  # about 8 periods
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    rounds = {r.seq for r in prober.results()}
    assert len(rounds) <= 3 * 9  # never more than 3 rounds started per period
    assert {r.peer for r in prober.results()} == {f"p{i}" for i in range(12)}  # every peer had a turn
    assert "self" not in pool.calls
