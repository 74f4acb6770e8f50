"""Encrypted shards at rest: per-shard AES-GCM keys, keys wrapped to one node's certificate key, and
released only for blocks a plan assigns that node (never a privacy-critical one to an untrusted node).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from dataplane_nodes import running_node
from fastapi import FastAPI
from gateway_world import served

from edgesplit.errors import PrivacyViolationError, ShardIntegrityError
from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.node.shard_cache import ShardOffer
from edgesplit.orchestrator.shard_registry import DirShardStorage, ShardRegistry, shard_router
from edgesplit.security.shard_crypto import (
    KeyRequest,
    ShardKeyRing,
    decrypt_block_file,
    decrypt_shard,
    encrypt_shard,
    encrypt_store,
    may_hold,
    new_shard_key,
    release_keys,
    shard_id,
    unwrap_key,
    wrap_key,
)
from edgesplit.wire.messages import PlanSegment, PlanSpec

MODEL = "builtin:llama-tiny"  # 6 blocks
PRIVACY = [0, 1, 5]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ShardKeyRing]:
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.shards import write_shards

    root = tmp_path_factory.mktemp("shards")
    write_shards(resolve_model(MODEL), root / "plain")
    ring = encrypt_store(root / "plain", root / "encrypted")
    return root / "plain", root / "encrypted", ring


def _blocks(store: Path) -> list[dict[str, object]]:
    return list(json.loads((store / "manifest.json").read_text())["blocks"])


def test_encrypted_shards_on_disk_are_not_readable_as_safetensors(
    stores: tuple[Path, Path, ShardKeyRing],
) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    plain, encrypted, _ = stores
    blocks = _blocks(encrypted)
    assert len(blocks) == 6
    for entry in blocks:
        path = encrypted / str(entry["file"])
        raw = path.read_bytes()
        assert load_file(plain / str(entry["file"]))  # the plain shard is a safetensors file
        with pytest.raises(SafetensorError):
            load_file(path)
        tensor_names = json.loads((plain / "manifest.json").read_text())["blocks"][int(entry["index"])]
        for name in tensor_names["tensors"]:
            assert name.encode() not in raw, f"tensor name {name} readable in {path.name}"
        # The manifest lists what nodes fetch and verify: the ciphertext's size and hash.
        assert entry["bytes"] == len(raw) and entry["sha256"] == hashlib.sha256(raw).hexdigest()


def test_the_shard_loader_refuses_an_encrypted_store(stores: tuple[Path, Path, ShardKeyRing]) -> None:
    from edgesplit.model.shards import load_segment_from_shards, read_manifest

    _, encrypted, _ = stores
    assert read_manifest(encrypted).num_blocks == 6  # same manifest format: the registry serves it as is
    with pytest.raises(ShardIntegrityError):
        load_segment_from_shards(encrypted, 0, 2)


def test_the_right_key_gives_back_the_exact_shard(stores: tuple[Path, Path, ShardKeyRing]) -> None:
    import torch
    from safetensors.torch import load, load_file

    plain, encrypted, ring = stores
    for entry in _blocks(encrypted):
        index, file = int(entry["index"]), str(entry["file"])
        clear = decrypt_block_file(encrypted / file, ring.shard_ids[index], ring.key(index))
        assert clear == (plain / file).read_bytes()
        assert ring.shard_ids[index] == shard_id(clear)
        ours, theirs = load(clear), load_file(plain / file)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_wrong_key_swapped_file_or_flipped_byte_fail(stores: tuple[Path, Path, ShardKeyRing]) -> None:
    _, encrypted, ring = stores
    one, two = _blocks(encrypted)[1], _blocks(encrypted)[2]
    blob_one = (encrypted / str(one["file"])).read_bytes()
    sid_one = ring.shard_ids[1]
    with pytest.raises(ShardIntegrityError):
        decrypt_shard(blob_one, str(one["file"]), sid_one, ring.key(2))
    with pytest.raises(ShardIntegrityError):  # block 1's bytes presented as block 2's file
        decrypt_shard(blob_one, str(two["file"]), ring.shard_ids[2], ring.key(1))
    flipped = bytearray(blob_one)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(ShardIntegrityError):
        decrypt_shard(bytes(flipped), str(one["file"]), sid_one, ring.key(1))
    with pytest.raises(ShardIntegrityError):
        decrypt_shard(b"not a shard", str(one["file"]), sid_one, ring.key(1))


def test_every_encryption_uses_a_fresh_nonce() -> None:
    key = new_shard_key()
    a, b = encrypt_shard(b"same bytes", "f", key), encrypt_shard(b"same bytes", "f", key)
    assert a != b and a[8:20] != b[8:20]
    assert decrypt_shard(a, "f", shard_id(b"same bytes"), key) == b"same bytes"


@pytest.mark.parametrize("kind", ["certificate-ec", "x25519"])
def test_a_wrapped_key_opens_only_for_its_node_and_shard(kind: str) -> None:
    def keypair() -> tuple[object, object]:
        private = (
            ec.generate_private_key(ec.SECP256R1())
            if kind == "certificate-ec"
            else x25519.X25519PrivateKey.generate()
        )
        return private, private.public_key()

    (mine, my_public), (other, _) = keypair(), keypair()
    key, sid = new_shard_key(), "ab" * 32
    wrapped = wrap_key(key, my_public, "mec1", sid)  # type: ignore[arg-type]
    assert key not in wrapped
    assert unwrap_key(wrapped, mine, "mec1", sid) == key  # type: ignore[arg-type]
    with pytest.raises(ShardIntegrityError):
        unwrap_key(wrapped, other, "mec1", sid)  # type: ignore[arg-type]
    with pytest.raises(ShardIntegrityError):
        unwrap_key(wrapped, mine, "cloud", sid)  # type: ignore[arg-type]
    with pytest.raises(ShardIntegrityError):
        unwrap_key(wrapped, mine, "mec1", "cd" * 32)  # type: ignore[arg-type]


def test_keys_are_released_only_for_assigned_blocks_and_never_critical_ones_to_untrusted_nodes(
    stores: tuple[Path, Path, ShardKeyRing],
) -> None:
    _, encrypted, ring = stores
    trusted_key = ec.generate_private_key(ec.SECP256R1())
    untrusted_key = ec.generate_private_key(ec.SECP256R1())
    mec = KeyRequest("mec1", True, trusted_key.public_key())
    cloud = KeyRequest("cloud", False, untrusted_key.public_key())
    # A trusted node gets the keys of its assigned blocks, critical or not, and they decrypt its files.
    wrapped = release_keys(
        ring, mec, assigned_blocks=[0, 1, 2], requested_blocks=[0, 1, 2], privacy_blocks=PRIVACY
    )
    for block, blob in wrapped.items():
        key = unwrap_key(blob, trusted_key, "mec1", ring.shard_ids[block])
        file = str(_blocks(encrypted)[block]["file"])
        assert (
            shard_id(decrypt_block_file(encrypted / file, ring.shard_ids[block], key))
            == ring.shard_ids[block]
        )
    # The untrusted node: non-critical assigned blocks yes; a critical one never, even if "assigned".
    assert set(release_keys(ring, cloud, [2, 3, 4], [2, 3, 4], PRIVACY)) == {2, 3, 4}
    with pytest.raises(PrivacyViolationError, match="not trusted"):
        release_keys(ring, cloud, [1, 2], [1, 2], PRIVACY)
    with pytest.raises(PrivacyViolationError, match="does not assign"):
        release_keys(ring, mec, [2], [2, 3], PRIVACY)
    assert [b for b in range(6) if may_hold(b, False, PRIVACY)] == [2, 3, 4]
    assert all(may_hold(b, True, PRIVACY) for b in range(6))


def test_the_key_ring_is_private_and_round_trips(
    stores: tuple[Path, Path, ShardKeyRing], tmp_path: Path
) -> None:
    _, _, ring = stores
    path = tmp_path / "shard_keys.json"
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ShardKeyRing.load(path)
    assert again.shard_ids == ring.shard_ids and all(again.key(b) == ring.key(b) for b in range(6))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cache_node(
    node_id: str, trusted: bool, cache: Path
) -> contextlib.AbstractAsyncContextManager[NodeAgent]:
    config = NodeConfig(
        node_id=node_id,
        shard_cache=cache,
        standby_blocks=1,
        trusted=trusted,
        privacy_blocks=PRIVACY,
        torch_threads=1,
    )
    return running_node(config)


async def _held_eventually(agent: NodeAgent, block: int) -> frozenset[int]:
    cache = agent.service._source.cache  # type: ignore[attr-defined]
    async with asyncio.timeout(60):
        while block not in cache.holdings():
            await asyncio.sleep(0.05)
    return frozenset(cache.holdings())


@pytest.mark.anyio
@pytest.mark.parametrize("trusted", [False, True])
async def test_an_untrusted_node_never_caches_a_privacy_critical_shard(
    stores: tuple[Path, Path, ShardKeyRing], tmp_path: Path, trusted: bool
) -> None:
    """Blocks 2:4 with one standby block each side: a trusted node also keeps block 1 (critical) on
    disk, an untrusted one never does, and refuses a plan that would make it fetch one."""
    plain, _, _ = stores
    registry = ShardRegistry(DirShardStorage(plain))
    app = FastAPI()
    app.include_router(shard_router(registry))
    cache = tmp_path / "cache"
    with served(app) as url:
        async with _cache_node("n", trusted, cache) as agent:
            agent.service.gate.offer = ShardOffer(url, registry.digests())
            await agent.service.apply_prepare(PlanSpec(1, (PlanSegment("n", 2, 4),)))
            held = await _held_eventually(agent, 4)  # the standby fetch goes block by block, in order
            on_disk = {int(p.name[6:10]) for p in cache.glob("block_*.safetensors")}
            if trusted:
                assert held >= {1, 2, 3, 4} and {1, 2, 3, 4} <= on_disk
                return
            assert held == {2, 3, 4} and on_disk == {2, 3, 4}
            with pytest.raises(PrivacyViolationError, match="not trusted"):
                await agent.service.apply_prepare(PlanSpec(2, (PlanSegment("n", 4, 6),)))
            on_disk = {int(p.name[6:10]) for p in cache.glob("block_*.safetensors")}
            assert not on_disk & set(PRIVACY)
