"""Where a node's segments come from: a checkpoint (or built-in) model, or a shard store.

Loads on whatever thread calls it (the agent uses a side thread so serving goes on); owns no sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from edgesplit.errors import ConfigError, ModelLoadError
from edgesplit.node.segments import SegmentRunnerLike, SegmentShape
from edgesplit.node.shard_cache import FetchReport, ShardCache, ShardOffer
from edgesplit.security.shard_release import ShardOpener


class SegmentSource(Protocol):
    """Builds the runner for blocks [start, end) and says what inputs it takes."""

    def load(self, start: int, end: int) -> tuple[SegmentRunnerLike, SegmentShape]: ...


def _shares(block_model: Any, start: int, end: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each block's share of decode and prefill FLOPs within [start, end) (empty if unknown)."""
    try:
        from edgesplit.model.costs import block_flops, shape_from_config

        shape = shape_from_config(block_model.config)
        flops = [block_flops(shape, block_model.blocks[i].kind) for i in range(start, end)]
    except Exception:
        return (), ()
    return _normalised([float(f.decode_base) for f in flops]), _normalised(
        [float(f.prefill_linear) for f in flops]
    )


def _normalised(values: list[float]) -> tuple[float, ...]:
    total = sum(values)
    return tuple(v / total for v in values) if total > 0 else ()


def _shape(block_model: Any, start: int, end: int) -> SegmentShape:
    decode, prefill = _shares(block_model, start, end)
    return SegmentShape(
        start,
        end,
        block_model.hidden_size,
        block_model.dtype,
        _param_bytes(block_model, start, end),
        decode,
        prefill,
    )


def _param_bytes(block_model: Any, start: int, end: int) -> int:
    total = 0
    for index in range(start, end):
        for tensor in block_model.block_state_dict(index).values():
            total += tensor.numel() * tensor.element_size()
    return total


class ModelSegmentSource:
    """Segments cut from one checkpoint, loaded once per process and shared by its segments."""

    def __init__(self, model: str) -> None:
        self._spec = model
        self._block_model: Any = None
        self._lock = threading.Lock()

    def _model(self) -> Any:
        with self._lock:
            if self._block_model is None:
                from edgesplit.model.builtin import resolve_model
                from edgesplit.model.loader import load_block_model

                self._block_model = load_block_model(resolve_model(self._spec))
            return self._block_model

    def load(self, start: int, end: int) -> tuple[SegmentRunnerLike, SegmentShape]:
        from edgesplit.model.segment import SegmentRunner

        block_model = self._model()
        runner = SegmentRunner(block_model, start, end)
        return runner, _shape(block_model, start, end)


class ShardSegmentSource:
    """Segments loaded block by block from a shard store (only the blocks a segment needs)."""

    def __init__(self, shard_dir: Path) -> None:
        self._shard_dir = shard_dir
        self.opener: ShardOpener | None = None

    def load(self, start: int, end: int) -> tuple[SegmentRunnerLike, SegmentShape]:
        try:
            from edgesplit.model.shards import load_segment_from_shards
        except ImportError as exc:
            raise ModelLoadError(f"this install cannot read shard stores yet ({self._shard_dir})") from exc
        opener = None if self.opener is None else self.opener.open
        runner = load_segment_from_shards(self._shard_dir, start, end, opener)
        block_model = runner.block_model
        return runner, _shape(block_model, start, end)


class CachedShardSource(ShardSegmentSource):
    """Segments loaded from the node's shard cache, which ``fetch`` fills from the orchestrator's registry
    (each file verified against the SHA-256 the signed plan names) before a prepare loads them. Encrypted
    files are opened in memory with the keys the signed prepares wrapped to this node's TLS key."""

    def __init__(self, cache: ShardCache) -> None:
        super().__init__(cache.root)
        self.cache = cache
        self.opener = ShardOpener()

    def identify(self, node_id: str, key_pem: bytes) -> None:
        """The node's id and TLS private key: what its shard keys are wrapped to."""
        assert self.opener is not None
        self.opener.identify(node_id, key_pem)

    def fetch(self, ranges: Iterable[tuple[int, int]], offer: ShardOffer | None) -> FetchReport:
        if offer is not None and self.opener is not None:
            self.opener.offer(offer.keys)
        return self.cache.ensure((b for s, e in ranges for b in range(s, e)), offer)


def source_for(
    model: str | None, shard_dir: Path | None, shard_cache: ShardCache | None = None
) -> SegmentSource:
    """The source a node config names: its shard cache, else a shard store, else the checkpoint."""
    if shard_cache is not None:
        return CachedShardSource(shard_cache)
    if shard_dir is not None:
        return ShardSegmentSource(shard_dir)
    if model is not None:
        return ModelSegmentSource(model)
    raise ConfigError("a node needs `model` (checkpoint folder or builtin:NAME) or `shard_dir`")
