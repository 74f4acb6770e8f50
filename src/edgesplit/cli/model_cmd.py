"""`edgesplit model init | inspect | shard`: built-in models, the block graph with its costs, shards.

Run: edgesplit model init --arch llama --preset tiny --out m/ && edgesplit model inspect m/ --json
Thin shell: parse flags, call edgesplit.model, print. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgesplit.errors import UserInputError

model_app = typer.Typer(
    name="model",
    help="Build built-in models, inspect a model's blocks and costs, write per-block weight shards.",
    no_args_is_help=True,
)

_DTYPES = ("float32", "bfloat16", "float16")

_INSPECT_HELP = """\
Show the block graph: per block its name, parameter bytes, KV bytes per token, output bytes per
token, FLOPs per token, privacy flag and measured ms per token on this machine.

Blocks: 0 = embedding, 1..n = transformer layers, n+1 = head (final norm + LM head + sampling).

With --json, stdout holds only one JSON object:

\b
  model: path, architecture, model_type, dtype, dtype_bytes, num_blocks, num_layers, hidden_size,
         num_heads, num_kv_heads, head_dim, intermediate_size, vocab_size, tie_word_embeddings,
         param_bytes (all tensors once), kv_bytes_per_token (all layers), context_tokens (C),
         measured (bool)
  blocks: a list in execution order, each with
    index, name ("embed", "layer.I", "head"), kind ("embedding" | "layer" | "head"),
    param_bytes          bytes of the tensors the block needs alone (a tied LM head counts in
                         both the embedding and the head),
    kv_bytes_per_token   KV cache per token: 2 * kv_heads * head_dim * dtype_bytes (layers; else 0),
    out_bytes_per_token  what one token's output weighs on the wire: hidden * dtype_bytes, or 4
                         for the head (a token id returns to the source, not logits);
                         also as out_bytes, the planner problem file's name for it,
    flops_per_token      decode FLOPs of one token at context C = base + per_context_token * C,
    decode_flops         {base, per_context_token}: layers 2*P + 4*d*c (P = matmul weights),
    prefill_flops        {fixed, linear, quadratic}: a prompt of s tokens costs
                         fixed + linear*s + quadratic*s^2 (the head projects only the last token),
    privacy              true for privacy-critical blocks (embedding, head, first layer(s)),
    ms_per_token         median decode-step time of the block alone (null with --no-measure).
"""


def register(app: typer.Typer) -> None:
    """Attach the `model` sub-app to the root app."""
    app.add_typer(model_app, name="model")


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers: stdout may have to be pure JSON."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@model_app.command("init")
def init(
    arch: str = typer.Option(..., "--arch", help="Architecture: llama | qwen2 | mistral | gpt2."),
    preset: str = typer.Option(
        "tiny", "--preset", help="Size: tiny (~0.3 M params) | small (~30 M) | base (~300 M)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the checkpoint into (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Weight seed: the same seed gives byte-identical weights."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a sentence."),
) -> None:
    """Write a deterministic random-weight model of a real architecture plus its tokenizer.

    The folder is a normal Hugging Face checkpoint: AutoModelForCausalLM and AutoTokenizer load it.
    """
    from edgesplit.model.builtin import BuiltinSpec

    spec = BuiltinSpec(arch, preset, seed)  # validates before the heavy imports
    _quiet_transformers()
    from edgesplit.model.builtin import init_model

    path = init_model(out, spec.arch, spec.preset, spec.seed)
    weights_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    if json_out:
        summary = {"path": str(path), "arch": arch, "preset": preset, "seed": seed}
        typer.echo(json.dumps({**summary, "weights_bytes": weights_bytes}))
    else:
        typer.echo(f"wrote {arch}-{preset} (seed {seed}, {_human_bytes(weights_bytes)} of weights) to {path}")


@model_app.command(
    "inspect",
    help=_INSPECT_HELP,
    short_help="The block graph with per-block bytes, KV, FLOPs, privacy and measured ms/token.",
)
def inspect(
    model: str = typer.Argument(..., help="Checkpoint folder, or builtin:ARCH-PRESET."),
    json_out: bool = typer.Option(False, "--json", help="Print only JSON (keys above)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Time each block's decode step."),
    context: int = typer.Option(16, "--context", min=1, help="Context length C for FLOPs and timing."),
    repeats: int = typer.Option(7, "--repeats", min=1, help="Timed decode steps per block (median)."),
    dtype: str = typer.Option("float32", "--dtype", help="Load dtype: float32 | bfloat16 | float16."),
    privacy_layers: int = typer.Option(
        1, "--privacy-layers", min=0, help="How many first layers are privacy-critical."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Torch intra-op threads while timing (default: torch's choice)."
    ),
) -> None:
    if dtype not in _DTYPES:
        raise UserInputError(f"--dtype: unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    _quiet_transformers()
    import torch

    from edgesplit.model.block_profile import costs_as_json, model_costs
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.loader import load_block_model

    if threads is not None:
        torch.set_num_threads(threads)  # this command's process only
    path = resolve_model(model)
    block_model = load_block_model(path, dtype=getattr(torch, dtype))
    costs = model_costs(
        block_model, measure=measure, timing_context=context, repeats=repeats, privacy_layers=privacy_layers
    )
    document = costs_as_json(costs, str(path), context)
    if json_out:
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_table(document)


@model_app.command("shard")
def shard(
    model: str = typer.Argument(..., help="Checkpoint folder, or builtin:ARCH-PRESET."),
    out: Path = typer.Option(..., "--out", help="Folder for the shards and manifest.json."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest's block list as JSON."),
) -> None:
    """Write one safetensors file per block plus a manifest (block, file, bytes, SHA-256, config)."""
    _quiet_transformers()
    from edgesplit.model.builtin import ensure_writable_dir, resolve_model
    from edgesplit.model.shards import write_shards

    path = resolve_model(model)
    ensure_writable_dir(out)
    manifest = write_shards(path, out)
    if json_out:
        blocks = [
            {"index": e.index, "name": e.name, "file": e.file, "bytes": e.bytes, "sha256": e.sha256}
            for e in manifest.blocks
        ]
        typer.echo(json.dumps({"out": str(out), "blocks": blocks}))
    else:
        total = sum(e.bytes for e in manifest.blocks)
        count = len(manifest.blocks)
        typer.echo(f"wrote {count} block shards ({_human_bytes(total)}) and manifest.json to {out}")


def _print_table(document: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    info = document["model"]
    kv = _human_bytes(info["kv_bytes_per_token"])
    title = (
        f"{info['architecture']}: {info['num_layers']} layers, d={info['hidden_size']}, "
        f"{_human_bytes(info['param_bytes'])} {info['dtype']}, KV {kv}/token"
    )
    caption = f"FLOPs and ms per decode token at context {info['context_tokens']}; out = bytes sent per token"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    for column in ("#", "block", "params", "KV/tok", "out/tok", "FLOP/tok", "private", "ms/tok"):
        justify = "left" if column in ("block", "private") else "right"
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for block in document["blocks"]:
        ms = block["ms_per_token"]
        table.add_row(
            str(block["index"]),
            block["name"],
            _human_bytes(block["param_bytes"]),
            _human_bytes(block["kv_bytes_per_token"]),
            _human_bytes(block["out_bytes_per_token"]),
            _human_count(block["flops_per_token"]),
            "yes" if block["privacy"] else "-",
            "-" if ms is None else f"{ms:.3f}",
        )
    Console(width=max(100, Console().width)).print(table)


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _human_count(n: int) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= threshold:
            return f"{n / threshold:.2f} {suffix}"
    return str(n)
