"""`edgesplit generate` per DESIGN §4.1: exact tokens, JSON shape, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from golden import hf_reference

if TYPE_CHECKING:
    from conftest import CliRun


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_json_output_matches_hf_generate(
    family: str,
    checkpoints: dict[str, Path],
    run_main: CliRun,
) -> None:
    from transformers import AutoTokenizer

    ckpt = checkpoints[family]
    prompt = "the quick brown fox"
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    prompt_ids = tokenizer(prompt)["input_ids"]
    assert prompt_ids[0] == tokenizer.bos_token_id  # the call adds <s>: generate must encode the same way
    code, out, err = run_main(
        "generate", "--model", str(ckpt), "--prompt", prompt,
        "--max-tokens", "12", "--segments", "0:1,1:3,3:5", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["segments"] == [[0, 1], [1, 3], [3, 5]]
    expected = hf_reference(ckpt, prompt_ids, steps=12).tokens
    eos = tokenizer.eos_token_id
    if eos in expected:  # HF generate stops after EOS; so must we
        expected = expected[: expected.index(eos) + 1]
    assert result["token_ids"] == expected
    assert result["text"] == tokenizer.decode(expected)


def write_corrupt(tmp: Path, source: Path) -> Path:
    for path in source.iterdir():
        (tmp / path.name).write_bytes(path.read_bytes())
    (tmp / "model.safetensors").write_bytes(b"\x00not a safetensors file")
    return tmp


def write_encoder_decoder(tmp: Path) -> Path:
    from transformers import T5Config

    T5Config(d_model=32, num_layers=1, num_heads=2, d_ff=32, vocab_size=50).save_pretrained(tmp)
    return tmp


def write_unsplittable(tmp: Path) -> Path:
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, is_decoder=True
    )
    BertLMHeadModel(config).save_pretrained(tmp)
    return tmp


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "does not exist"),
        ("corrupt", "cannot load weights"),
        ("encoder_decoder", "T5"),
        ("unsplittable", "BertLMHeadModel"),
        ("overlap", "overlaps"),
        ("gap", "gap"),
        ("out_of_range", "out of range"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case: str,
    needle: str,
    checkpoints: dict[str, Path],
    tmp_path: Path,
    run_main: CliRun,
) -> None:
    model, segments = checkpoints["llama"], "0:2,2:5"
    if case == "missing":
        model = tmp_path / "nope"
    elif case == "corrupt":
        model = write_corrupt(tmp_path, checkpoints["llama"])
    elif case == "encoder_decoder":
        model = write_encoder_decoder(tmp_path)
    elif case == "unsplittable":
        model = write_unsplittable(tmp_path)
    else:
        segments = {"overlap": "0:3,2:5", "gap": "0:2,3:5", "out_of_range": "0:2,2:9"}[case]
    args = [
        "generate",
        "--model",
        str(model),
        "--prompt",
        "hello",
        "--max-tokens",
        "2",
        "--segments",
        segments,
    ]
    code, out, err = run_main(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesplit: error:") and needle in lines[0], err
    assert "Traceback" not in err and out == ""


@pytest.mark.slow
def test_console_script_end_to_end(checkpoints: dict[str, Path]) -> None:
    """The real process: JSON on stdout, exit 0; and a bad spec exits 2 without a traceback."""
    base = [sys.executable, "-m", "edgesplit.cli.main", "generate", "--model", str(checkpoints["qwen2"])]
    ok = subprocess.run([*base, "--prompt", "hello world", "--max-tokens", "4", "--json"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["token_ids"]) <= 4
    bad = subprocess.run(
        [*base, "--prompt", "x", "--segments", "0:1,2:5"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert torch.tensor(json.loads(ok.stdout)["token_ids"]).dtype == torch.int64
