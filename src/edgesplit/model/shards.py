"""Weight shards: one safetensors file per block plus a manifest, and segments loaded from them alone.

Loading reads only the segment's own files, verifies each SHA-256 before parsing it, and builds the
rest of the model on the meta device, so memory follows the segment's share of the weights.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgesplit.errors import (
    ModelLoadError,
    SegmentSpecError,
    ShardIntegrityError,
    UnsupportedArchitectureError,
)
from edgesplit.model.adapters import adapter_for
from edgesplit.model.loader import BlockModel, check_checkpoint_dir, load_block_model, load_config
from edgesplit.model.segment import SegmentRunner

MANIFEST = "manifest.json"
HASH_CHUNK_BYTES = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")

Opener = Callable[[int, str, bytes], bytes]
"""(block index, file name, file bytes) -> safetensors bytes: decrypts an encrypted store in memory."""


class ShardEntry(BaseModel):
    """One block's shard file."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    """Block index (0 = embedding, n + 1 = head)."""
    name: str
    """Block name: ``embed``, ``layer.I`` or ``head``."""
    kind: Literal["embedding", "layer", "head"]
    file: str
    """File name inside the shard folder."""
    bytes: int = Field(ge=0)
    """Size of the file in bytes."""
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    """SHA-256 of the file's bytes, lowercase hex."""
    tensors: list[str]
    """Checkpoint names of the tensors inside (tied weights appear in every block using them)."""


class ShardManifest(BaseModel):
    """``manifest.json`` of a shard folder (format edgesplit-shards/1)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["edgesplit-shards/1"] = "edgesplit-shards/1"
    architecture: str
    """The HF class, e.g. ``LlamaForCausalLM``."""
    model_type: str
    dtype: str
    """Torch dtype of the stored tensors, e.g. ``float32``."""
    num_blocks: int = Field(ge=3)
    config: dict[str, Any]
    """The model config (as in config.json, which is copied beside the shards too)."""
    blocks: list[ShardEntry]
    tokenizer_files: list[str]
    """Tokenizer files copied from the checkpoint, so the shard folder serves `generate` alone."""


def write_shards(
    checkpoint_dir: Path | str, out_dir: Path | str, dtype: torch.dtype = torch.float32
) -> ShardManifest:
    """Split a checkpoint into one safetensors file per block; write and return the manifest."""
    from safetensors.torch import save_file

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    block_model = load_block_model(checkpoint_dir, dtype=dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for block in block_model.blocks:
        tensors = {k: v.detach().contiguous() for k, v in block_model.block_state_dict(block.index).items()}
        file = f"block_{block.index:04d}.safetensors"
        save_file(tensors, out_dir / file, metadata={"block": str(block.index), "name": block.name})
        data = (out_dir / file).read_bytes()
        entries.append(
            ShardEntry(
                index=block.index,
                name=block.name,
                kind=block.kind,
                file=file,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                tensors=sorted(tensors),
            )
        )
    copied = []
    for path in sorted(checkpoint_dir.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != MANIFEST:
            shutil.copy2(path, out_dir / path.name)
            copied.append(path.name)
    config = block_model.config
    manifest = ShardManifest(
        architecture=type(block_model.model).__name__,
        model_type=config.model_type,
        dtype=str(dtype).removeprefix("torch."),
        num_blocks=block_model.num_blocks,
        config=config.to_dict(),
        blocks=entries,
        tokenizer_files=[n for n in copied if n not in ("config.json", "generation_config.json")],
    )
    (out_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return manifest


def read_manifest(shard_dir: Path | str) -> ShardManifest:
    """The folder's manifest; ModelLoadError when missing or malformed."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"{shard_dir} has no {MANIFEST}; write one with `edgesplit model shard`")
    try:
        return ShardManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ModelLoadError(f"{path} is not a valid shard manifest: {exc.errors()[0]['msg']}") from exc


def load_blocks_from_shards(
    shard_dir: Path | str, start: int, end: int, opener: Opener | None = None
) -> BlockModel:
    """A BlockModel with only blocks [start, end) materialised, read from their shard files.

    Every other block stays on the meta device (no memory). Raises ShardIntegrityError naming the
    block when a file's SHA-256 or size differs from the manifest. With ``opener`` the files are read
    whole, verified, and handed to it (an encrypted store: plaintext exists in memory only).
    """
    from transformers import AutoModelForCausalLM

    shard_dir = Path(shard_dir)
    check_checkpoint_dir(shard_dir)
    manifest = read_manifest(shard_dir)
    if not 0 <= start < end <= manifest.num_blocks:
        raise SegmentSpecError(
            f"segment {start}:{end} is out of range: the model has blocks 0:{manifest.num_blocks}"
        )
    config = load_config(shard_dir)
    dtype = getattr(torch, manifest.dtype)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
    model.eval()
    block_model = BlockModel(model, adapter_for(model), materialized=range(start, end))
    entries = {e.index: e for e in manifest.blocks}
    for index in range(start, end):
        entry = entries.get(index)
        if entry is None:
            raise ModelLoadError(f"{shard_dir / MANIFEST} lists no shard for block {index}")
        tensors = (
            _verified_tensors(shard_dir, entry)
            if opener is None
            else _opened_tensors(shard_dir, entry, opener)
        )
        for prefix in block_model.block_prefixes(index):
            module = model.get_submodule(prefix[:-1])
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(own, strict=True, assign=True)
            except RuntimeError as exc:
                raise ModelLoadError(
                    f"shard of block {index} ({entry.name}) does not fit the model: {exc}"
                ) from exc
            if any(t.is_meta for t in module.buffers()) and index not in (0, manifest.num_blocks - 1):
                raise UnsupportedArchitectureError(
                    f"cannot load {manifest.architecture} from shards: "
                    f"block {index} has buffers no checkpoint stores"
                )
    block_model.adapter.rebuild_non_persistent()
    return block_model


def load_segment_from_shards(
    shard_dir: Path | str, start: int, end: int, opener: Opener | None = None
) -> SegmentRunner:
    """A SegmentRunner for blocks [start, end) built from their shards alone."""
    return SegmentRunner(load_blocks_from_shards(shard_dir, start, end, opener), start, end)


def _opened_tensors(shard_dir: Path, entry: ShardEntry, opener: Opener) -> dict[str, torch.Tensor]:
    """The tensors of a file read once into memory, checked against the manifest, then opened."""
    from safetensors.torch import load

    where = f"block {entry.index} ({entry.name})"
    try:
        data = (shard_dir / entry.file).read_bytes()
    except OSError as exc:
        raise ShardIntegrityError(f"{where}: cannot read shard {shard_dir / entry.file}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256 or len(data) != entry.bytes:
        raise ShardIntegrityError(
            f"{where}: shard {entry.file} fails its hash check: SHA-256 {actual} ({len(data)} bytes) "
            f"but the manifest says {entry.sha256} ({entry.bytes} bytes)"
        )
    plaintext = opener(entry.index, entry.file, data)
    try:
        return {k: v.clone() for k, v in load(plaintext).items()}
    except Exception as exc:  # safetensors raises its own error types
        raise ShardIntegrityError(f"{where}: cannot parse shard {entry.file}: {exc}") from exc


def _verified_tensors(shard_dir: Path, entry: ShardEntry) -> dict[str, torch.Tensor]:
    """The shard's tensors, once the file's bytes match the manifest.

    The hash is computed streaming and the tensors are read straight into their own memory (pread,
    not mmap), so no second in-memory copy of the file exists (a bytes copy stayed resident in the
    allocator: ~30 % extra RSS). The file's identity (inode, size, mtime) must not change between
    hashing and loading.
    """
    from safetensors.torch import load_file

    path = shard_dir / entry.file
    where = f"block {entry.index} ({entry.name})"
    try:
        before = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise ShardIntegrityError(f"{where}: cannot read shard {path}: {exc}") from exc
    actual = digest.hexdigest()
    if actual != entry.sha256 or before.st_size != entry.bytes:
        raise ShardIntegrityError(
            f"{where}: shard {entry.file} fails its hash check: SHA-256 {actual} ({before.st_size} bytes) "
            f"but the manifest says {entry.sha256} ({entry.bytes} bytes)"
        )
    try:
        tensors = load_file(path, backend="pread")  # owned memory: later file edits cannot leak in
    except Exception as exc:  # safetensors raises its own error types
        raise ShardIntegrityError(f"{where}: cannot parse shard {entry.file}: {exc}") from exc
    after = path.stat()
    if (after.st_ino, after.st_size, after.st_mtime_ns) != (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    ):
        raise ShardIntegrityError(f"{where}: shard {entry.file} changed while it was being loaded")
    return tensors
