"""Encrypted shards on the live path: the orchestrator's encrypted store and per-node key release from
CA-issued certificates, and a node's shard source opening the ciphertext files in memory only."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from edgesplit.errors import ShardIntegrityError
from edgesplit.model.loader import load_block_model
from edgesplit.node.loading import CachedShardSource
from edgesplit.node.shard_cache import ShardCache, ShardOffer
from edgesplit.security.pki import init_ca, issue
from edgesplit.security.shard_crypto import MAGIC
from edgesplit.security.shard_release import encrypted_registry, offered_keys

MODEL = "builtin:llama-tiny"  # 6 blocks
PRIVACY = [0, 1, 5]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.shards import write_shards

    root = tmp_path_factory.mktemp("release")
    write_shards(resolve_model(MODEL), root / "plain")
    pki = root / "pki"
    init_ca(pki)
    issue(pki, "device", trusted=True)
    issue(pki, "cloud", trusted=False)
    return {"root": root, "plain": root / "plain", "pki": pki, "state": root / "state"}


def _release(world: dict[str, Path]) -> tuple[Path, Callable[..., dict[str, Any]]]:
    world["state"].mkdir(exist_ok=True)
    return encrypted_registry(world["plain"], world["state"], world["pki"], ["device", "cloud"], PRIVACY)


def test_store_is_encrypted_keys_are_private_and_reused_while_the_model_is_unchanged(
    world: dict[str, Path],
) -> None:
    enc_dir, _ = _release(world)
    keys = world["state"] / "shard_keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    manifest = json.loads((enc_dir / "manifest.json").read_text())
    for entry in manifest["blocks"]:
        blob = (enc_dir / entry["file"]).read_bytes()
        plain = (world["plain"] / entry["file"]).read_bytes()
        assert blob.startswith(MAGIC) and plain[8:200] not in blob
    before = keys.read_bytes()
    _release(world)  # a restart: same keys, same files (nodes' caches stay valid)
    assert keys.read_bytes() == before


def test_each_node_gets_wrapped_keys_of_exactly_its_blocks_and_never_a_critical_one_untrusted(
    world: dict[str, Path],
) -> None:
    _, release = _release(world)
    meta = release([("device", 0, 2), ("cloud", 2, 5), ("device", 5, 6)])
    assert set(meta) == {"device", "cloud"}
    assert set(meta["device"]) == {"0", "1", "5"} and set(meta["cloud"]) == {"2", "3", "4"}
    assert offered_keys(meta, "cloud").keys() == {2, 3, 4}
    assert offered_keys(meta, "mec1") == {}
    # A plan that would hand the untrusted node the head: it gets no key at all (it refuses the fetch).
    bad = release([("device", 0, 2), ("cloud", 2, 6)])
    assert "cloud" not in bad and set(bad["device"]) == {"0", "1"}


def test_node_source_decrypts_in_memory_with_its_own_tls_key_only(world: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    from edgesplit.model.builtin import resolve_model

    enc_dir, release = _release(world)
    meta = release([("device", 0, 2), ("cloud", 2, 5), ("device", 5, 6)])
    cache_dir = world["root"] / "cloud-cache"
    cache_dir.mkdir(exist_ok=True)
    for name in ("manifest.json", "config.json", *(f"block_{b:04d}.safetensors" for b in (2, 3, 4))):
        (cache_dir / name).write_bytes((enc_dir / name).read_bytes())
    digests = {
        int(b["index"]): b["sha256"] for b in json.loads((enc_dir / "manifest.json").read_text())["blocks"]
    }
    offer = ShardOffer("http://unused", digests, offered_keys(meta, "cloud"))
    source = CachedShardSource(ShardCache(cache_dir))
    source.fetch([(2, 5)], offer)
    with pytest.raises(ShardIntegrityError, match="no signed plan gave"):
        source.load(2, 5)  # no TLS identity yet: the key cannot be opened
    source.identify("cloud", (world["pki"] / "device.key").read_bytes())
    with pytest.raises(ShardIntegrityError, match="not wrapped"):
        source.load(2, 5)  # another node's private key cannot open cloud's keys
    source.identify("cloud", (world["pki"] / "cloud.key").read_bytes())
    runner, shape = source.load(2, 5)
    reference = load_block_model(resolve_model(MODEL))
    for index in (2, 3, 4):
        want = reference.block_state_dict(index)
        got = runner.block_model.block_state_dict(index)  # type: ignore[attr-defined]
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert shape.param_bytes > 0
    for path in cache_dir.glob("block_*.safetensors"):  # the cache still holds ciphertext only
        with pytest.raises(Exception):  # noqa: B017 - safetensors' own error types
            load_file(path)
    offer_no_key = ShardOffer("http://unused", digests, {})
    fresh = CachedShardSource(ShardCache(cache_dir))
    fresh.identify("cloud", (world["pki"] / "cloud.key").read_bytes())
    fresh.fetch([(2, 3)], offer_no_key)
    with pytest.raises(ShardIntegrityError, match="block 2"):
        fresh.load(2, 3)
