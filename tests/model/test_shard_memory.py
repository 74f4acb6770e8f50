"""Loading a quarter of the blocks from shards costs about a quarter of the memory (RSS, subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgesplit.model.shards import write_shards

MEASURE = """
import json, sys, psutil, torch
from transformers import AutoModelForCausalLM
from edgesplit.model.loader import load_config
from edgesplit.model.shards import load_segment_from_shards
shards, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with torch.device("meta"):  # import the modeling code before measuring
    AutoModelForCausalLM.from_config(load_config(__import__("pathlib").Path(shards)))
process = psutil.Process()
before = process.memory_info().rss
runner = load_segment_from_shards(shards, start, end)
print(json.dumps({"delta": process.memory_info().rss - before, "blocks": [runner.start, runner.end]}))
"""


def rss_delta(shards: Path, start: int, end: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(shards), str(start), str(end)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.strip().splitlines()[-1])["delta"])


@pytest.mark.slow
def test_quarter_of_the_blocks_takes_about_a_quarter_of_the_memory(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
        vocab_size=4096, tie_word_embeddings=False,
    )  # fmt: skip  # ~250 MB of fp32 weights, ~28 MB per layer
    LlamaForCausalLM(config).save_pretrained(tmp_path / "ckpt")
    manifest = write_shards(tmp_path / "ckpt", tmp_path / "shards")
    sizes = {b.index: b.bytes for b in manifest.blocks}
    total = sum(sizes.values())
    quarter = (1, 3)  # 2 of the 8 layers
    quarter_bytes = sizes[1] + sizes[2]
    full = rss_delta(tmp_path / "shards", 0, manifest.num_blocks)
    part = rss_delta(tmp_path / "shards", *quarter)
    assert full >= 0.8 * total, (full, total)  # the measurement sees the weights at all
    assert part <= 1.3 * quarter_bytes + 16 * 2**20, (part, quarter_bytes)
    assert part <= 0.4 * full, (part, full)
    mib = 2**20
    print(
        f"RSS delta: all blocks {full / mib:.0f} MiB, blocks 1:3 {part / mib:.0f} MiB "
        f"(weights {total / mib:.0f} MiB)"
    )
