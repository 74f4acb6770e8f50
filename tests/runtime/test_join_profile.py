"""A node asked to profile at join times every block once, as it would serve it (emulated speed and
block profile apply), and reports the profile with its telemetry before serving anything."""

from __future__ import annotations

import pytest
from fakes import fake_cluster

from edgesplit.node.config import EmulationConfig
from edgesplit.transport.node_admin import NodeAdmin

pytestmark = pytest.mark.anyio

PROFILE = {str(b): {"decode_ms": 10.0 * (b + 1), "prefill_ms_per_token": 1.0} for b in range(4)}


async def test_join_profile_times_each_block_with_the_nodes_emulated_speed() -> None:
    emulation = EmulationConfig.model_validate(
        {"speed_factor": 0.5, "background_load": 0.2, "block_profile": PROFILE}
    )
    async with fake_cluster([(0, 4)], 4, profile_blocks=4, emulation=emulation) as (_, nodes):
        admin = NodeAdmin(nodes[0].address)
        try:
            snap = await admin.telemetry()
        finally:
            await admin.close()
    assert sorted(snap.profile_decode_s) == [0, 1, 2, 3]
    for block, seconds in snap.profile_decode_s.items():
        expected = 0.010 * (block + 1) / 0.5 / (1 - 0.2)
        assert expected <= seconds < expected + 0.05, (block, seconds, expected)
    assert snap.profile_prefill_s[2] == pytest.approx(0.001 / 0.5 / 0.8, rel=0.5)
    assert snap.profile_utilization == pytest.approx(0.2)
    assert snap.background_utilization == pytest.approx(0.2)


async def test_no_profile_unless_asked() -> None:
    async with fake_cluster([(0, 4)], 4) as (_, nodes):
        admin = NodeAdmin(nodes[0].address)
        try:
            snap = await admin.telemetry()
        finally:
            await admin.close()
    assert snap.profile_decode_s == {}
