"""Shard registry -> node shard cache: listing, streamed fetch verified against the signed plan's SHA-256,
refusal (and abort) on a mismatch, standby shards, disk reuse, and the epoch record across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgesplit.errors import ModelLoadError, PlanRejectedError, ShardIntegrityError
from edgesplit.model.builtin import resolve_model
from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.node.loading import CachedShardSource
from edgesplit.node.shard_cache import ShardCache, ShardOffer, standby_blocks
from edgesplit.orchestrator.http_api import bind, url_of
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan, assignment_of
from edgesplit.orchestrator.plans import PlanSegment as OrchSegment
from edgesplit.orchestrator.shard_registry import DirShardStorage, ShardRegistry, prepare_store, shard_router
from edgesplit.orchestrator.signing import SignedMessage, generate_key, public_key_text, sign
from edgesplit.transport.node_admin import NodeAdmin

KEY = generate_key()
N_BLOCKS = 6  # llama-tiny: embedding, 4 layers, head


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "shards"
    prepare_store(resolve_model("builtin:llama-tiny"), out)
    return out


class TamperedStorage(DirShardStorage):
    """Serves block ``bad``'s file with one byte flipped (a corrupted or malicious registry)."""

    def __init__(self, root: Path, bad: int) -> None:
        super().__init__(root)
        self.bad_file = next(b["file"] for b in self.manifest()["blocks"] if b["index"] == bad)

    def read(self, name: str) -> Iterator[bytes]:
        for i, chunk in enumerate(super().read(name)):
            yield bytes([chunk[0] ^ 1]) + chunk[1:] if name == self.bad_file and i == 0 else chunk


@contextlib.contextmanager
def serving(registry: ShardRegistry) -> Iterator[str]:
    """The registry's router on a real HTTP server (uvicorn, own thread, port chosen at run time)."""
    import uvicorn

    app = FastAPI()
    app.include_router(shard_router(registry))
    sock = bind("127.0.0.1:0")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "registry server did not start"
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_registry_lists_every_block_with_hash_and_streams_exact_bytes(shard_dir: Path) -> None:
    registry = ShardRegistry(DirShardStorage(shard_dir))
    app = FastAPI()
    app.include_router(shard_router(registry))
    client = TestClient(app)
    listing = client.get("/v1/shards").json()
    assert listing["num_blocks"] == N_BLOCKS and len(listing["shards"]) == N_BLOCKS
    assert {"manifest.json", "config.json"} <= set(listing["files"])
    for shard in listing["shards"]:
        body = client.get(f"/v1/shards/blocks/{shard['index']}").content
        assert len(body) == shard["bytes"] == (shard_dir / shard["file"]).stat().st_size
        assert hashlib.sha256(body).hexdigest() == shard["sha256"]
    assert client.get(f"/v1/shards/blocks/{N_BLOCKS}").status_code == 404
    assert client.get("/v1/shards/files/..%2Fsecret").status_code == 404
    missing = client.get("/v1/shards/files/orchestrator_ed25519.pem")  # only the store's own files
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    manifest = json.loads(client.get("/v1/shards/files/manifest.json").content)
    assert {b["index"]: b["sha256"] for b in manifest["blocks"]} == registry.digests()


def test_prepare_store_reuses_a_matching_store_and_rewrites_a_stale_one(
    tmp_path: Path, shard_dir: Path
) -> None:
    import os
    import shutil

    model = tmp_path / "model"
    shutil.copytree(resolve_model("builtin:llama-tiny"), model)
    store = tmp_path / "store"
    prepare_store(model, store)
    first = (store / "manifest.json").stat().st_mtime_ns
    prepare_store(model, store)
    assert (store / "manifest.json").stat().st_mtime_ns == first  # reused, not re-sharded
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(first + 10**9, first + 10**9))  # the checkpoint changed since
    prepare_store(model, store)
    assert (store / "manifest.json").stat().st_mtime_ns != first
    assert not (tmp_path / "store.partial").exists()


def test_cache_fetches_verifies_and_then_loads_from_disk(tmp_path: Path, shard_dir: Path) -> None:
    registry = ShardRegistry(DirShardStorage(shard_dir))
    with serving(registry) as url:
        offer = ShardOffer(url, registry.digests())
        cache = ShardCache(tmp_path / "cache")
        source = CachedShardSource(cache)
        with pytest.raises(ModelLoadError):
            source.fetch([(0, 2)], None)  # nothing cached and no registry offered
        report = source.fetch([(0, 2)], offer)
        assert report.fetched == (0, 1) and report.fetched_bytes == sum(
            registry.shards[b].bytes for b in (0, 1)
        )
        assert cache.holdings() == {0, 1} and cache.fetch_bps and cache.fetch_bps > 0
        runner, shape = source.load(0, 2)
        assert (shape.start, shape.end) == (0, 2) and runner is not None
        again = source.fetch([(0, 2)], offer)
        assert again.fetched == () and again.cached == (0, 1)
    # A new process over the same folder re-verifies what is on disk and needs no registry for it.
    reopened = ShardCache(tmp_path / "cache")
    assert reopened.holdings() == {0, 1}
    assert reopened.ensure([0, 1], None).fetched == ()


def test_a_shard_failing_its_signed_hash_is_refused_and_not_kept(tmp_path: Path, shard_dir: Path) -> None:
    registry = ShardRegistry(TamperedStorage(shard_dir, bad=2))
    with serving(registry) as url:
        cache = ShardCache(tmp_path / "cache")
        with pytest.raises(ShardIntegrityError) as err:
            cache.ensure([1, 2], ShardOffer(url, registry.digests()))
        message = str(err.value)
        assert "block 2" in message and registry.shards[2].sha256 in message
        assert cache.holdings() == {1}
        assert not list((tmp_path / "cache").glob("*.part"))
        assert not (tmp_path / "cache" / registry.shards[2].file).exists()
        # A registry whose manifest disagrees with the signed plan is refused before any download.
        forged = {**registry.digests(), 3: "0" * 64}
        with pytest.raises(ShardIntegrityError, match="block 3"):
            ShardCache(tmp_path / "other").ensure([3], ShardOffer(url, forged))


def test_standby_blocks_are_the_neighbours_of_each_segment() -> None:
    assert standby_blocks([(2, 4)], 1, 6) == {1, 4}
    assert standby_blocks([(0, 2)], 2, 6) == {2, 3}
    assert standby_blocks([(0, 3), (3, 6)], 1, 6) == frozenset()
    assert standby_blocks([(2, 4)], 0, 6) == frozenset()


def signed_prepare(epoch: int, offer: ShardOffer | None, *segments: tuple[str, int, int]) -> SignedMessage:
    meta = (
        {}
        if offer is None
        else {"shards": {"registry": offer.registry, "sha256": {str(k): v for k, v in offer.sha256.items()}}}
    )
    chain = sorted(segments, key=lambda seg: seg[1])
    plan = Plan(epoch, assignment_of([OrchSegment(n, s, e) for n, s, e in chain]), meta=meta)
    return sign(ControlMessage(MessageKind.PREPARE, epoch, plan), KEY)


@contextlib.asynccontextmanager
async def node(cache: Path, standby: int = 0) -> AsyncIterator[NodeAdmin]:
    config = NodeConfig(
        node_id="a",
        shard_cache=cache,
        standby_blocks=standby,
        orchestrator_public_key=public_key_text(KEY),
        torch_threads=1,
    )
    agent, stop, ready = NodeAgent(config), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(agent.run(stop, on_ready=lambda _a: ready.set()))
    admin = NodeAdmin("")
    try:
        await asyncio.wait_for(ready.wait(), 30)
        admin = NodeAdmin(agent.address)
        yield admin
    finally:
        await admin.close()
        stop.set()
        await asyncio.wait_for(task, 60)


async def wait_for(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_node_fetches_on_signed_prepare_keeps_standby_and_refuses_a_bad_shard(
    tmp_path: Path, shard_dir: Path
) -> None:
    good = ShardRegistry(DirShardStorage(shard_dir))
    bad = ShardRegistry(TamperedStorage(shard_dir, bad=4))
    with serving(good) as good_url, serving(bad) as bad_url:
        async with node(tmp_path / "cache", standby=1) as admin:
            m = signed_prepare(1, ShardOffer(good_url, good.digests()), ("a", 0, 6))
            state = await admin.prepare_raw(m.payload, m.signature)
            assert state.segments == ((0, 6),)
            snap = await admin.telemetry()
            assert snap.cached_blocks == frozenset(range(6)) and snap.shard_fetch_bps > 0
            # Epoch 2 moves the node to 2:4; its standby (1 and 4) is already on disk.
            m2 = signed_prepare(
                2, ShardOffer(good_url, good.digests()), ("a", 2, 4), ("b", 0, 2), ("b", 4, 6)
            )
            assert (await admin.prepare_raw(m2.payload, m2.signature)).segments == ((2, 4),)
        async with node(tmp_path / "fresh", standby=1) as admin:
            m = signed_prepare(1, ShardOffer(good_url, good.digests()), ("a", 2, 3), ("b", 0, 2), ("b", 3, 6))
            await admin.prepare_raw(m.payload, m.signature)

            async def standby_cached() -> bool:
                return (await admin.telemetry()).cached_blocks == {1, 2, 3}

            await wait_for(standby_cached, 20)  # block 2 served, 1 and 3 fetched in the background
            # A registry serving a corrupted block 4: the prepare is refused, naming the block.
            m3 = signed_prepare(3, ShardOffer(bad_url, good.digests()), ("a", 2, 5), ("b", 0, 2), ("b", 5, 6))
            with pytest.raises(ShardIntegrityError, match="block 4"):
                await admin.prepare_raw(m3.payload, m3.signature)
            assert 4 not in (await admin.telemetry()).cached_blocks


@pytest.mark.anyio
async def test_the_highest_accepted_epoch_survives_a_node_restart(tmp_path: Path, shard_dir: Path) -> None:
    good = ShardRegistry(DirShardStorage(shard_dir))
    with serving(good) as url:
        offer = ShardOffer(url, good.digests())
        old = signed_prepare(2, offer, ("a", 0, 6))
        async with node(tmp_path / "cache") as admin:
            await admin.prepare_raw(old.payload, old.signature)
            commit = sign(ControlMessage(MessageKind.COMMIT, 2), KEY)
            await admin.commit(2, signed=commit.payload, signature=commit.signature)
        assert (tmp_path / "cache" / "highest_epoch").read_text().strip() == "2"
        async with node(tmp_path / "cache") as admin:  # restarted: same folder
            with pytest.raises(PlanRejectedError, match="already seen"):
                await admin.prepare_raw(old.payload, old.signature)  # replayed after the restart
            older = signed_prepare(1, offer, ("a", 0, 6))
            with pytest.raises(PlanRejectedError):
                await admin.prepare_raw(older.payload, older.signature)
            newer = signed_prepare(3, offer, ("a", 0, 6))
            assert (await admin.prepare_raw(newer.payload, newer.signature)).epoch == 3
