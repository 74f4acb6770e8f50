"""`edgesplit model init | inspect | shard`: JSON shapes, hand-computed costs, one-line errors with exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CliRun


def test_init_writes_a_loadable_checkpoint(tmp_path: Path, run_main: CliRun) -> None:
    out = tmp_path / "m"
    code, stdout, stderr = run_main(
        "model", "init", "--arch", "mistral", "--preset", "tiny", "--out", str(out),
        "--seed", "5", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["path"] == str(out) and summary["seed"] == 5
    assert summary["weights_bytes"] == (out / "model.safetensors").stat().st_size
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "MistralForCausalLM"
    assert AutoTokenizer.from_pretrained(out)("hi")["input_ids"][0] == 1  # <s>


# Llama tiny by hand: d = 64, 4 heads and 4 KV heads of 16, SwiGLU 176, vocab 512, fp32.
LLAMA_LAYER_MATMUL = 4 * 64 * 64 + 3 * 64 * 176
LLAMA_BYTES = {
    "embed": 512 * 64 * 4,
    "layer": (LLAMA_LAYER_MATMUL + 2 * 64) * 4,  # + two RMSNorm weights
    "head": (64 + 512 * 64) * 4,  # final norm + LM head
}


def test_inspect_json_has_the_block_graph_with_hand_computed_costs(tiny_models, run_main: CliRun) -> None:
    code, stdout, stderr = run_main(
        "model", "inspect", str(tiny_models["llama"]), "--json", "--no-measure",
        "--context", "16",
    )  # fmt: skip
    assert code == 0, stderr
    document = json.loads(stdout)  # stdout is only JSON
    blocks = document["blocks"]
    assert [b["name"] for b in blocks] == ["embed", "layer.0", "layer.1", "layer.2", "layer.3", "head"]
    assert [b["index"] for b in blocks] == list(range(6))
    assert [b["kind"] for b in blocks] == ["embedding"] + ["layer"] * 4 + ["head"]
    assert [b["param_bytes"] for b in blocks] == [LLAMA_BYTES["embed"]] + [LLAMA_BYTES["layer"]] * 4 + [
        LLAMA_BYTES["head"]
    ]
    assert [b["kv_bytes_per_token"] for b in blocks] == [0] + [2 * 4 * 16 * 4] * 4 + [0]
    assert [b["out_bytes_per_token"] for b in blocks] == [64 * 4] * 5 + [4]
    assert [b["flops_per_token"] for b in blocks] == [0] + [2 * LLAMA_LAYER_MATMUL + 4 * 64 * 16] * 4 + [
        2 * 64 * 512
    ]
    assert blocks[1]["prefill_flops"] == {"fixed": 0, "linear": 2 * LLAMA_LAYER_MATMUL, "quadratic": 4 * 64}
    assert [b["privacy"] for b in blocks] == [True, True, False, False, False, True]
    assert all(b["ms_per_token"] is None for b in blocks)
    model = document["model"]
    assert model["architecture"] == "LlamaForCausalLM"
    assert (model["num_blocks"], model["num_layers"], model["hidden_size"]) == (6, 4, 64)
    assert model["param_bytes"] == sum(b["param_bytes"] for b in blocks)  # untied: nothing shared
    assert model["kv_bytes_per_token"] == 4 * 512


def test_inspect_counts_a_tied_head_in_both_blocks(tiny_models, run_main: CliRun) -> None:
    code, stdout, _ = run_main("model", "inspect", str(tiny_models["gpt2"]), "--json", "--no-measure")
    assert code == 0
    document = json.loads(stdout)
    per_block = sum(b["param_bytes"] for b in document["blocks"])
    assert per_block - document["model"]["param_bytes"] == 512 * 64 * 4  # wte counted twice


def test_inspect_measures_every_block_and_prints_a_table(tiny_models, run_main: CliRun) -> None:
    path = str(tiny_models["qwen2"])
    code, stdout, stderr = run_main("model", "inspect", path, "--json", "--repeats", "2")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["model"]["measured"] is True
    assert all(0 < b["ms_per_token"] < 1000 for b in document["blocks"])
    code, stdout, stderr = run_main("model", "inspect", path, "--repeats", "1")
    assert code == 0, stderr
    for name in ("embed", "layer.3", "head", "Qwen2ForCausalLM"):
        assert name in stdout


def test_shard_writes_one_verified_file_per_block(tiny_models, tmp_path: Path, run_main: CliRun) -> None:
    out = tmp_path / "shards"
    code, stdout, stderr = run_main("model", "shard", str(tiny_models["llama"]), "--out", str(out), "--json")
    assert code == 0, stderr
    listed = json.loads(stdout)["blocks"]
    assert [b["index"] for b in listed] == list(range(6))
    assert (out / "manifest.json").is_file()
    for block in listed:
        data = (out / block["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == block["sha256"] and len(data) == block["bytes"]


def _corrupt_config(tmp: Path, good: Path) -> Path:
    bad = tmp / "bad_config"
    shutil.copytree(good, bad)
    (bad / "config.json").write_text("{not json")
    return bad


def _corrupt_weights(tmp: Path, good: Path) -> Path:
    bad = tmp / "bad_weights"
    shutil.copytree(good, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return bad


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("missing dir", ["model", "inspect", "{tmp}/nope"], "does not exist"),
        ("corrupt config", ["model", "inspect", "{bad_config}"], "config.json"),
        ("corrupt weights", ["model", "inspect", "{bad_weights}", "--no-measure"], "weights"),
        ("shard corrupt", ["model", "shard", "{bad_weights}", "--out", "{tmp}/s"], "weights"),
        ("unknown arch", ["model", "init", "--arch", "bert", "--out", "{tmp}/m"], "unknown architecture"),
        (
            "unknown preset",
            ["model", "init", "--arch", "llama", "--preset", "xl", "--out", "{tmp}/m"],
            "preset",
        ),
        ("out is a file", ["model", "init", "--arch", "gpt2", "--out", "{tmp}/file"], "not a directory"),
        ("out under a file", ["model", "init", "--arch", "gpt2", "--out", "{tmp}/file/sub"], "cannot create"),
        ("shard out is a file", ["model", "shard", "{good}", "--out", "{tmp}/file"], "not a directory"),
        ("bad dtype", ["model", "inspect", "{good}", "--dtype", "int3"], "dtype"),
        ("bad builtin", ["model", "inspect", "builtin:llama"], "builtin:ARCH-PRESET"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case: str, args: list[str], message: str, tiny_models, tmp_path: Path, run_main: CliRun
) -> None:
    good = tiny_models["llama"]
    (tmp_path / "file").write_text("not a folder")
    paths = {
        "tmp": tmp_path,
        "good": good,
        "bad_config": _corrupt_config(tmp_path, good),
        "bad_weights": _corrupt_weights(tmp_path, good),
    }
    code, stdout, stderr = run_main(*(a.format(**paths) for a in args))
    assert code == 2, (case, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesplit: error: "), stderr
    assert message in lines[0] and "Traceback" not in stderr


def test_costs_feed_a_planner_problem(tiny_models) -> None:
    from edgesplit.model.block_profile import costs_as_problem_blocks, model_costs
    from edgesplit.model.loader import load_block_model
    from edgesplit.orchestrator.planner.problem import BlockSpec

    costs = model_costs(load_block_model(tiny_models["gpt2"]), measure=True, timing_context=4, repeats=1)
    blocks = [BlockSpec.model_validate(b) for b in costs_as_problem_blocks(costs)]
    assert [b.name for b in blocks] == ["embed", "layer.0", "layer.1", "layer.2", "layer.3", "head"]
    assert all(b.work_ms > 0 for b in blocks)
    assert blocks[-1].out_bytes == 4 and blocks[0].privacy and not blocks[2].privacy
