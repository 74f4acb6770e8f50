"""CLI: `edgesplit generate` — greedy generation in one process, running the model as given segments.

Run: edgesplit generate --model DIR --prompt "hello" --max-tokens 16 --segments 0:3,3:14 --json
Parses flags and prints; loading, splitting and decoding live in edgesplit.model.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from edgesplit.errors import UserInputError


def register(app: typer.Typer) -> None:
    """Attach `generate` to the root app."""
    app.command("generate")(generate)


def generate(
    model: str = typer.Option(..., "--model", help="Checkpoint folder (or builtin:NAME)."),
    prompt: str = typer.Option(..., "--prompt", help="Prompt text, encoded as tokenizer(prompt) does."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=0, help="Most tokens to generate."),
    segments: str | None = typer.Option(
        None,
        "--segments",
        help="Block ranges START:END, comma-separated, covering all blocks (default: one).",
    ),
    json_out: bool = typer.Option(False, "--json", help='Print {"text", "token_ids", "segments"}.'),
) -> None:
    """Greedy generation executing the model as a chain of segments (block indices, end exclusive)."""
    from transformers.utils import logging as hf_logging

    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model, load_tokenizer, resolve_model_dir
    from edgesplit.model.segments_spec import parse_segments

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model_dir = resolve_model_dir(model)
    block_model = load_block_model(model_dir)
    chain_spec = parse_segments(segments, block_model.num_blocks)
    tokenizer = load_tokenizer(model_dir)
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    if not prompt_ids:
        raise UserInputError("the prompt encodes to no tokens; give a non-empty --prompt")
    limit = block_model.adapter.max_positions()
    if limit is not None and len(prompt_ids) + max_tokens > limit:
        raise UserInputError(
            f"{len(prompt_ids)} prompt tokens + --max-tokens {max_tokens} "
            f"exceed the model's {limit} positions"
        )
    generation_config: Any = block_model.model.generation_config
    eos = generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    chain = SegmentChain.from_block_model(block_model, chain_spec)
    token_ids = chain.generate(prompt_ids, max_tokens, eos_token_ids=eos_ids) if max_tokens else []
    text = tokenizer.decode(token_ids)
    if json_out:
        typer.echo(
            json.dumps({"text": text, "token_ids": token_ids, "segments": [list(s) for s in chain_spec]})
        )
    else:
        typer.echo(text)
