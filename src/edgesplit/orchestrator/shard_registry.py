"""The shard registry the orchestrator serves: the model as one file per block (model/shards.py format),
listed with SHA-256 and size, each file streamed over HTTP to nodes that lack it.

Storage sits behind ``ShardStorage`` (one small interface, so shards can be kept encrypted at rest);
the HTTP side is a FastAPI ``APIRouter`` mounted on the orchestrator's app. Knows nothing of torch
except when it must shard a checkpoint itself (``prepare_store``, lazily imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edgesplit.errors import ModelLoadError
from edgesplit.gateway.error_map import ApiError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SOURCE_MARKER = "source.json"
CHUNK_BYTES = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ShardInfo:
    """One block's shard as the registry lists it."""

    index: int
    name: str
    file: str
    bytes: int
    sha256: str


class ShardStorage(Protocol):
    """Where the registry's files live. ``read`` yields a file's bytes as the nodes must receive them."""

    def manifest(self) -> Mapping[str, Any]: ...

    def read(self, name: str) -> Iterator[bytes]: ...


class DirShardStorage:
    """A shard folder written by ``edgesplit model shard`` (manifest.json + one file per block)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self._manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{root} holds no readable {MANIFEST}: {exc}") from exc

    def manifest(self) -> Mapping[str, Any]:
        return self._manifest

    def read(self, name: str) -> Iterator[bytes]:
        with (self.root / name).open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk


class ShardRegistry:
    """The registry's catalogue over a ``ShardStorage``: which files exist, their hashes, their bytes."""

    def __init__(self, storage: ShardStorage) -> None:
        self.storage = storage
        manifest = storage.manifest()
        self.shards = {
            int(b["index"]): ShardInfo(
                int(b["index"]), str(b["name"]), str(b["file"]), int(b["bytes"]), str(b["sha256"])
            )
            for b in manifest["blocks"]
        }
        self.num_blocks = int(manifest["num_blocks"])
        self.meta_files = sorted({MANIFEST, "config.json", *manifest.get("tokenizer_files", ())})

    def listing(self) -> dict[str, Any]:
        """``GET /v1/shards``: every block's file with SHA-256 and size, and the model's small files."""
        return {
            "format": self.storage.manifest().get("format"),
            "num_blocks": self.num_blocks,
            "shards": [vars(s) for _, s in sorted(self.shards.items())],
            "files": self.meta_files,
        }

    def digests(self) -> dict[int, str]:
        return {i: s.sha256 for i, s in self.shards.items()}

    def offer(self, url: str) -> dict[str, Any]:
        """What a signed prepare carries: where to fetch and the SHA-256 each block must have."""
        return {"registry": url, "sha256": {str(i): h for i, h in sorted(self.digests().items())}}

    def block_file(self, index: int) -> ShardInfo | None:
        return self.shards.get(index)


def shard_router(registry: ShardRegistry) -> APIRouter:
    """``GET /v1/shards`` (listing), ``/v1/shards/blocks/{index}``, ``/v1/shards/files/{name}`` (streamed)."""
    router = APIRouter()

    @router.get("/v1/shards")
    async def list_shards() -> dict[str, Any]:
        return registry.listing()

    @router.get("/v1/shards/blocks/{index}", response_model=None)
    async def get_block(index: int) -> Response:
        shard = registry.block_file(index)
        if shard is None:
            return _not_found(
                f"no shard for block {index}: the model has blocks 0:{registry.num_blocks}", "index"
            )
        headers = {"X-Shard-SHA256": shard.sha256, "Content-Length": str(shard.bytes)}
        return StreamingResponse(
            _iterate(registry.storage, shard.file), media_type="application/octet-stream", headers=headers
        )

    @router.get("/v1/shards/files/{name}", response_model=None)
    async def get_file(name: str) -> Response:
        if name not in registry.meta_files or not _SAFE_NAME.match(name):
            return _not_found(
                f"no shard-store file {name!r}; files: {', '.join(registry.meta_files)}", "name"
            )
        return StreamingResponse(_iterate(registry.storage, name), media_type="application/octet-stream")

    return router


def _not_found(message: str, param: str) -> JSONResponse:
    """An OpenAI-shaped 404 (the same body ``gateway.error_map.ApiError`` produces)."""
    return JSONResponse(ApiError(404, message, "not_found_error", param, "not_found").body(), status_code=404)


async def _iterate(storage: ShardStorage, name: str) -> Any:
    """Stream a file without blocking the event loop on disk reads."""
    chunks = storage.read(name)
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk


def prepare_store(model_path: Path, shard_dir: Path) -> DirShardStorage:
    """The model's shard folder in the orchestrator's state: reused while the checkpoint's files are
    unchanged (names, sizes, mtimes recorded beside it), else (re)written from the checkpoint."""
    marker = shard_dir / SOURCE_MARKER
    source = _fingerprint(model_path)
    if (shard_dir / MANIFEST).is_file() and marker.is_file():
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()) == source:
                return DirShardStorage(shard_dir)
    from edgesplit.model.shards import write_shards

    tmp = shard_dir.with_name(shard_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_shards(model_path, tmp)
    (tmp / SOURCE_MARKER).write_text(json.dumps(source))
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    tmp.rename(shard_dir)
    return DirShardStorage(shard_dir)


def _fingerprint(model_path: Path) -> dict[str, Any]:
    """What the shards were cut from: the checkpoint folder and each file's name, size and mtime."""
    files = sorted(p for p in model_path.iterdir() if p.is_file())
    return {
        "checkpoint": str(model_path.resolve()),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }
