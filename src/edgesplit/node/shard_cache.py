"""A node's shard cache on disk: block files fetched from the orchestrator's registry, each verified
against the SHA-256 the signed plan names before it is kept; later loads read the disk copy.

Runs on side threads (prepare, standby fetches); never on the event loop, never touches sessions.
The folder is a normal shard store (model/shards.py format), holding only the blocks fetched so far.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesplit.errors import ModelLoadError, ShardIntegrityError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
FETCH_TIMEOUT_S = 60.0
EWMA_ALPHA = 0.3
WARM_ARCHITECTURES = ("llama", "qwen2", "mistral", "gpt2")
"""Model families with an edgesplit adapter (model/adapters)."""


@dataclass(frozen=True)
class ShardOffer:
    """From a signed prepare: the registry to fetch from, the SHA-256 every block must have, and this
    node's wrapped keys (``block -> (shard id, wrapped key)``) when the store is encrypted."""

    registry: str
    sha256: Mapping[int, str]
    keys: Mapping[int, tuple[str, bytes]] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], node_id: str | None = None) -> ShardOffer | None:
        """The ``shards`` entry of a plan's meta (None when the plan carries none or it is malformed)."""
        raw = meta.get("shards")
        if not isinstance(raw, Mapping):
            return None
        try:
            digests = {int(k): str(v) for k, v in dict(raw["sha256"]).items()}
            from edgesplit.security.shard_release import offered_keys

            return cls(str(raw["registry"]).rstrip("/"), digests, offered_keys(raw.get("keys"), node_id))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class FetchReport:
    """What ``ensure`` did: blocks downloaded (bytes, seconds) and blocks already on disk."""

    fetched: tuple[int, ...] = ()
    fetched_bytes: int = 0
    fetch_s: float = 0.0
    cached: tuple[int, ...] = ()


class ShardCache:
    """Block files in ``root``; ``held`` are those verified since this process started (or fetched).

    ``link_bps`` (optional) returns the emulated bandwidth to the registry in bit/s (0: unlimited); a
    download then lasts at least as long as those bytes take on that link (DESIGN §3 rule 2).
    """

    def __init__(self, root: Path, link_bps: Callable[[], float] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._link_bps = link_bps
        self._lock = threading.Lock()  # one ensure at a time (held for whole downloads)
        self.fetch_bps: float | None = None
        """EWMA of measured download rates, bit/s (None before the first fetch)."""
        self.held: frozenset[int] = frozenset()
        """Replaced, never mutated: ``holdings`` reads it on the event loop without waiting for a download."""
        self._scan()

    def _manifest(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.root / MANIFEST).read_text())
            return data
        except (OSError, ValueError):
            return None

    def _entries(self) -> dict[int, dict[str, Any]]:
        manifest = self._manifest()
        return {} if manifest is None else {int(b["index"]): b for b in manifest.get("blocks", ())}

    def _scan(self) -> None:
        """Trust no file from before this process: keep only those whose hash matches the manifest."""
        for index, entry in self._entries().items():
            path = self.root / str(entry["file"])
            if path.is_file() and _sha256(path) == entry["sha256"]:
                self.held = self.held | {index}

    def holdings(self) -> frozenset[int]:
        return self.held

    def ensure(self, blocks: Iterable[int], offer: ShardOffer | None) -> FetchReport:
        """Make every block in ``blocks`` present and verified; fetch what is missing from the registry.

        Raises ShardIntegrityError naming the block and both hashes when a download (or the cached
        manifest) disagrees with the signed plan, ModelLoadError when a block is missing and no
        registry was offered.
        """
        wanted = sorted(set(blocks))
        with self._lock:
            if offer is not None:
                self._sync_manifest(offer, wanted)
            entries = self._entries()
            fetched: list[int] = []
            nbytes = 0
            started = time.perf_counter()
            for index in wanted:
                entry = entries.get(index)
                expected = offer.sha256.get(index) if offer is not None else None
                if index in self.held and (
                    expected is None or (entry is not None and entry["sha256"] == expected)
                ):
                    continue
                if offer is None or entry is None or expected is None:
                    raise ModelLoadError(
                        f"block {index} is not in the shard cache {self.root} and no registry offers it"
                    )
                nbytes += self._download(offer, index, str(entry["file"]), expected)
                self.held = self.held | {index}
                fetched.append(index)
            elapsed = time.perf_counter() - started
            if fetched and elapsed > 0:
                rate = nbytes * 8 / elapsed
                old = self.fetch_bps
                self.fetch_bps = rate if old is None else old + EWMA_ALPHA * (rate - old)
            cached = tuple(i for i in wanted if i not in fetched)
            return FetchReport(tuple(fetched), nbytes, elapsed if fetched else 0.0, cached)

    def _sync_manifest(self, offer: ShardOffer, wanted: list[int]) -> None:
        """Fetch the small files (manifest, config, tokenizer) when absent or naming other hashes."""
        before = self._entries()
        if all(i in before and before[i]["sha256"] == offer.sha256.get(i) for i in wanted):
            return
        import httpx

        listing = httpx.get(f"{offer.registry}/v1/shards", timeout=FETCH_TIMEOUT_S)
        listing.raise_for_status()
        for name in listing.json()["files"]:
            if "/" in name or name.startswith("."):
                raise ShardIntegrityError(f"the registry names an unsafe file {name!r}")
            reply = httpx.get(f"{offer.registry}/v1/shards/files/{name}", timeout=FETCH_TIMEOUT_S)
            reply.raise_for_status()
            _write_atomically(self.root / name, reply.content)
        entries = self._entries()
        for index in wanted:
            listed = entries.get(index, {}).get("sha256")
            if listed != offer.sha256.get(index):
                raise ShardIntegrityError(
                    f"block {index}: the registry's manifest lists SHA-256 {listed} but the signed plan "
                    f"says {offer.sha256.get(index)}; refusing the shard store"
                )
        # A block file stays held only if the new manifest still names the hash it was verified with.
        self.held = frozenset(
            i for i in self.held if i in entries and entries[i]["sha256"] == before.get(i, {}).get("sha256")
        )

    def _download(self, offer: ShardOffer, index: int, file: str, expected: str) -> int:
        """Stream one block file to a temporary name, hashing as it comes; keep it only if it matches."""
        import httpx

        path = self.root / file
        tmp = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        size = 0
        started = time.perf_counter()
        try:
            with httpx.stream(
                "GET", f"{offer.registry}/v1/shards/blocks/{index}", timeout=FETCH_TIMEOUT_S
            ) as r:
                r.raise_for_status()
                with tmp.open("wb") as out:
                    for chunk in r.iter_bytes(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise ModelLoadError(
                f"block {index}: cannot fetch its shard from {offer.registry}: {exc}"
            ) from exc
        actual = digest.hexdigest()
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise ShardIntegrityError(
                f"block {index}: the fetched shard {file} has SHA-256 {actual} ({size} bytes) but the "
                f"signed plan says {expected}; refused"
            )
        self._pace(size, time.perf_counter() - started)
        os.replace(tmp, path)
        log.info("fetched shard of block %d (%d bytes) from %s", index, size, offer.registry)
        return size

    def _pace(self, nbytes: int, elapsed_s: float) -> None:
        bps = self._link_bps() if self._link_bps is not None else 0.0
        if bps > 0:
            time.sleep(max(0.0, nbytes * 8 / bps - elapsed_s))


def standby_blocks(ranges: Iterable[tuple[int, int]], width: int, num_blocks: int) -> frozenset[int]:
    """The ``width`` blocks on each side of every segment: a boundary can shift there without a download."""
    held = {b for s, e in ranges for b in range(s, e)}
    near = {b for s, e in ranges for b in (*range(s - width, s), *range(e, e + width)) if 0 <= b < num_blocks}
    return frozenset(near - held)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def fetch_standby(cache: ShardCache, blocks: Iterable[int], offer: ShardOffer) -> None:
    """Background fill of the standby set; a failure is logged and retried at the next prepare."""
    import asyncio

    try:
        report = await asyncio.to_thread(cache.ensure, blocks, offer)
        if report.fetched:
            log.info(
                "standby shards fetched: blocks %s (%d bytes)", list(report.fetched), report.fetched_bytes
            )
    except Exception as exc:
        log.warning("standby shard fetch failed (serving is unaffected): %s", exc)


def registry_link_bps(emulation: Any) -> float:
    """Emulated bandwidth (bit/s) from this node to the registry: its link named ``orchestrator``, else
    its default link (a node.config.EmulationConfig; 0 means unlimited)."""
    link = emulation.links.get("orchestrator", emulation.default_link)
    return float(link.bandwidth_mbps) * 1e6


def warm_model_imports(root: Path) -> None:
    """Import the model code before serving, so a node's first prepare does not pay for it (seconds on a
    busy machine): the architecture named by a cached config, else every one edgesplit adapts (the
    first prepare is what tells a new node which)."""
    import importlib

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (root / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(root)
            with torch.device("meta"):
                AutoModelForCausalLM.from_config(config)
            return
        except Exception as exc:  # a warm-up only: the prepare will report a real problem
            log.info("model warm-up skipped: %s", exc)
    for arch in WARM_ARCHITECTURES:
        try:
            importlib.import_module(f"transformers.models.{arch}.modeling_{arch}")
        except ImportError as exc:
            log.info("model warm-up of %s skipped: %s", arch, exc)
