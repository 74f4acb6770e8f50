"""Shards: a segment loaded from its block files alone equals one cut from the checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from edgesplit.errors import SegmentSpecError, ShardIntegrityError
from edgesplit.model.loader import load_block_model
from edgesplit.model.segment import SegmentRunner
from edgesplit.model.shards import load_segment_from_shards, write_shards
from edgesplit.model.steps import SegmentStep


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2"])
def sharded(
    request: pytest.FixtureRequest, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp(f"shards-{request.param}")
    write_shards(checkpoints[request.param], out)
    return checkpoints[request.param], out


def run_twice(runner: SegmentRunner, hidden_size: int) -> torch.Tensor:
    """Prefill then one decode step; the outputs stacked (hidden states or logits)."""
    torch.manual_seed(1)
    first = torch.tensor([2, 7, 11, 5]) if runner.start == 0 else torch.randn(4, hidden_size)
    second = torch.tensor([9]) if runner.start == 0 else torch.randn(1, hidden_size)
    outs = []
    for x, position in ((first, 0), (second, 4)):
        out = runner.step([SegmentStep("s", x, position, want_logits=True)])[0]
        assert out.error is None
        outs.append(out.hidden if out.hidden is not None else out.logits)
    return torch.cat(outs)  # type: ignore[arg-type]


def test_manifest_describes_every_block(sharded: tuple[Path, Path]) -> None:
    checkpoint, shards = sharded
    manifest = json.loads((shards / "manifest.json").read_text())
    block_model = load_block_model(checkpoint)
    assert manifest["num_blocks"] == block_model.num_blocks == len(manifest["blocks"])
    for entry in manifest["blocks"]:
        data = (shards / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["blocks"][-1]["kind"] == "head"
    assert "tokenizer.json" in manifest["tokenizer_files"] and (shards / "tokenizer.json").is_file()
    assert manifest["config"]["model_type"] == block_model.config.model_type


def test_segments_from_shards_equal_segments_from_checkpoint(sharded: tuple[Path, Path]) -> None:
    checkpoint, shards = sharded
    block_model = load_block_model(checkpoint)
    n = block_model.num_blocks
    for start, end in ((0, 1), (1, 3), (2, n), (n - 1, n), (0, n)):
        ours = run_twice(load_segment_from_shards(shards, start, end), block_model.hidden_size)
        reference = run_twice(SegmentRunner(block_model, start, end), block_model.hidden_size)
        # Same weights, same code; only memory alignment (hence SIMD rounding) may differ.
        assert (ours - reference).abs().max().item() <= 1e-5, (start, end)


def test_only_the_segments_own_files_are_read(sharded: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = sharded
    partial = tmp_path / "partial"
    partial.mkdir()
    manifest = json.loads((shards / "manifest.json").read_text())
    keep = {b["file"] for b in manifest["blocks"] if b["index"] in (1, 2)}
    for path in shards.iterdir():
        if not path.name.startswith("block_") or path.name in keep:
            (partial / path.name).write_bytes(path.read_bytes())
    runner = load_segment_from_shards(partial, 1, 3)
    assert runner.step([SegmentStep("s", torch.randn(2, runner.block_model.hidden_size), 0)])[0].ok
    with pytest.raises(ShardIntegrityError, match="block 0"):
        load_segment_from_shards(partial, 0, 2)


def test_tampered_shard_is_refused_naming_block_and_hash(sharded: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = sharded
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in shards.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / "block_0002.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01  # one bit in the last tensor's bytes: still parses, must still be refused
    target.write_bytes(bytes(data))
    expected = json.loads((copy / "manifest.json").read_text())["blocks"][2]["sha256"]
    with pytest.raises(ShardIntegrityError) as info:
        load_segment_from_shards(copy, 1, 3)
    message = str(info.value)
    assert "block 2" in message and expected in message and hashlib.sha256(data).hexdigest() in message
    load_segment_from_shards(copy, 0, 2)  # untouched blocks still load


def test_out_of_range_segment_is_refused(sharded: tuple[Path, Path]) -> None:
    _, shards = sharded
    with pytest.raises(SegmentSpecError, match="out of range"):
        load_segment_from_shards(shards, 2, 99)
