"""KV-cache transfer: a session moved to a new chain mid-generation continues exactly as re-prefill does."""

from __future__ import annotations

import asyncio

import pytest
from two_nodes import OLD, deploy, route_of, two_nodes

from edgesplit.errors import SessionError, SessionNotFoundError
from edgesplit.gateway.cutover import Cutover, CutoverSettings, cutover_for, layers_of
from edgesplit.gateway.decoder import Decoder, GenerationRequest, GenerationState
from edgesplit.model.kv_cache import KVSnapshot
from edgesplit.transport.base import Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import KVTransfer

pytestmark = pytest.mark.anyio

NEW = [(0, 2), (2, 6)]
PROMPT = tuple(range(3, 40))
TOKENS = 12
SWITCH_AFTER = 5


async def generate(transfer: bool | None) -> tuple[list[int], Cutover]:
    """Greedy tokens for PROMPT; ``transfer`` None: no plan change, else switch after SWITCH_AFTER tokens."""
    async with two_nodes() as (agents, book):
        client = GrpcSegmentClient()
        decoder = Decoder(client, book, frozenset())
        decoder.cutover.settings = CutoverSettings(min_tokens=1, enabled=bool(transfer))
        out: list[int] = []
        try:
            async for token in decoder.generate(GenerationRequest(PROMPT, TOKENS), GenerationState()):
                out.append(token)
                if transfer is not None and len(out) == SWITCH_AFTER:
                    await deploy(agents, book, 2, NEW)
            await decoder.drain()
        finally:
            await client.close()
        return out, decoder.cutover


async def test_cut_over_with_kv_transfer_generates_the_same_text_as_re_prefill_and_no_change() -> None:
    steady, _ = await generate(None)
    moved, kv = await generate(True)
    replayed, rp = await generate(False)
    assert len(steady) == TOKENS
    assert moved == steady == replayed
    assert (kv.stats.transfers, kv.stats.reprefills, kv.stats.failures) == (1, 0, 0)
    assert kv.stats.last_transfer_bytes > 0
    assert (rp.stats.transfers, rp.stats.reprefills) == (0, 1)


async def test_export_import_round_trip_and_bad_imports_are_refused() -> None:
    async with two_nodes() as (agents, _):
        route = route_of(agents, 1, OLD)
        client = GrpcSegmentClient()
        admins = [NodeAdmin(a.address) for a in agents]
        try:
            from edgesplit.transport.base import ChainStep

            await client.run_step(route, ChainStep("s", PROMPT, 0), 30.0)
            got = await admins[0].export_kv("s", 0, 3, 10.0)
            assert got.snapshot.length == len(PROMPT)
            assert sorted(got.snapshot.layers) == list(layers_of(0, 3, 6)) == [0, 1]
            keys, values = got.snapshot.layers[0]
            assert keys.shape[1] == len(PROMPT) and keys.shape == values.shape
            with pytest.raises(SessionNotFoundError):
                await admins[0].export_kv("nobody", 0, 3, 10.0)
            # n1 serves 3:6 (layers 2, 3): layers 0 and 1 do not fit there.
            with pytest.raises(SessionError):
                await admins[1].import_kv(
                    KVTransfer(3, 6, KVSnapshot("t", len(PROMPT), got.snapshot.layers), 1)
                )
            # A truncated tensor (wrong length for the claimed tokens) is refused too.
            short = {i: (k[:, :3], v[:, :3]) for i, (k, v) in got.snapshot.layers.items()}
            with pytest.raises(SessionError):
                await admins[0].import_kv(KVTransfer(0, 3, KVSnapshot("t", len(PROMPT), short), 1))
            # Importing it back as a new session continues exactly like the original.
            await admins[0].import_kv(
                KVTransfer(0, 3, KVSnapshot("copy", len(PROMPT), got.snapshot.layers), 1)
            )
            tail = await admins[1].export_kv("s", 3, 6, 10.0)
            await admins[1].import_kv(
                KVTransfer(3, 6, KVSnapshot("copy", len(PROMPT), tail.snapshot.layers), 1)
            )
            a = await client.run_step(route, ChainStep("s", (7,), len(PROMPT)), 30.0)
            b = await client.run_step(route, ChainStep("copy", (7,), len(PROMPT)), 30.0)
            assert a.token_id == b.token_id
        finally:
            await asyncio.gather(*(a.close() for a in admins))
            await client.close()


class _FailingMover:
    async def export_kv(self, hop: Hop, session_id: str, timeout_s: float) -> KVSnapshot:
        raise SessionNotFoundError("gone")

    async def import_kv(self, hop: Hop, epoch: int, snap: KVSnapshot, timeout_s: float) -> None:
        raise AssertionError("never reached")


async def test_a_failed_transfer_falls_back_to_re_prefill_and_short_histories_never_transfer() -> None:
    route = Route(0, (Hop("a", "x", 0, 6),))
    cut = Cutover(_FailingMover(), settings=CutoverSettings(min_tokens=8))
    assert await cut.move(route, route, "s", "t", 4) == 0  # too short: re-prefill without trying
    assert cut.stats.failures == 0
    assert await cut.move(route, route, "s", "t", 100) == 0
    assert (cut.stats.failures, cut.stats.reprefills) == (1, 2)


def test_prediction_picks_the_cheaper_path_once_both_are_measured() -> None:
    samples = [{"latency_s": 0.2, "tokens": 100}]  # 2 ms per prefill token
    cut = Cutover(_FailingMover(), lambda: samples, CutoverSettings(min_tokens=8))
    assert cut.prefer_transfer(50)  # transfer rate unknown: measure it
    cut.transfer_s_per_token = 0.001
    assert cut.prefer_transfer(50)
    cut.transfer_s_per_token = 0.004
    assert not cut.prefer_transfer(50)
    assert not cutover_for(object(), lambda: ()).prefer_transfer(50)  # in-process client: no mover


def test_layers_of_blocks() -> None:
    assert list(layers_of(0, 6, 6)) == [0, 1, 2, 3]
    assert list(layers_of(0, 1, 6)) == [] and list(layers_of(5, 6, 6)) == []
    assert list(layers_of(2, 4, 6)) == [1, 2]
