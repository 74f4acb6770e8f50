"""The block graph of a loaded model with its costs, and per-block decode timing on this machine.

A thin shell around the pure formulas in ``costs``: reads tensor sizes from a ``BlockModel`` and
times single-block ``SegmentRunner`` decode steps. Knows nothing about the CLI or the network.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from edgesplit.model.costs import BlockCost, ModelShape, block_costs, shape_from_config
from edgesplit.model.loader import BlockModel
from edgesplit.model.segment import SegmentRunner
from edgesplit.model.steps import SegmentOutput, SegmentStep

_PROBE = "edgesplit-timing-probe"


@dataclass(frozen=True)
class ModelCosts:
    """A model's shape, per-block costs and what they were computed for."""

    shape: ModelShape
    architecture: str
    dtype: str
    dtype_bytes: int
    blocks: list[BlockCost]
    unique_param_bytes: int
    """Bytes of all tensors counted once (tied weights once); ≤ the sum over blocks."""
    timing_context: int | None
    """KV positions already cached when each block's decode step was timed; None when not timed."""


def block_param_bytes(block_model: BlockModel) -> list[int]:
    """Bytes of the tensors each block needs on its own (tied weights counted in every user)."""
    sizes = []
    for index in range(block_model.num_blocks):
        tensors = block_model.block_state_dict(index).values()
        sizes.append(sum(t.numel() * t.element_size() for t in tensors))
    return sizes


def measure_decode_seconds(
    block_model: BlockModel, context: int = 16, repeats: int = 7, warmup: int = 2
) -> list[float]:
    """Median seconds of one decode step (one session, one token) through each block alone.

    Each block runs as its own single-block ``SegmentRunner`` after a prefill of ``context`` tokens;
    every timed step replays position ``context`` (the runner rolls the cache back), so all repeats
    see the same context. Blocks are timed round-robin, so noise from other processes on a shared
    machine hits all of them alike. Runner overhead (validation, cache bookkeeping) is included on
    purpose: a real chain pays it per block too.
    """
    generator = torch.Generator().manual_seed(0)
    runners: list[tuple[SegmentRunner, list[SegmentStep]]] = []
    for index in range(block_model.num_blocks):
        runner = SegmentRunner(block_model, index, index + 1)
        if index == 0:
            prompt = torch.randint(0, block_model.vocab_size, (context + 1,), generator=generator)
        else:
            prompt = torch.randn(context + 1, block_model.hidden_size, generator=generator)
            prompt = prompt.to(block_model.dtype)
        _check(runner.step([SegmentStep(_PROBE, prompt[:context], 0)]))
        runners.append((runner, [SegmentStep(_PROBE, prompt[context:], context)]))
    samples: list[list[float]] = [[] for _ in runners]
    for round_ in range(warmup + repeats):
        for index, (runner, step) in enumerate(runners):
            start = time.perf_counter()
            _check(runner.step(step))
            if round_ >= warmup:
                samples[index].append(time.perf_counter() - start)
    for runner, _ in runners:
        runner.drop(_PROBE)
    return [statistics.median(s) for s in samples]


def _check(outputs: Sequence[SegmentOutput]) -> None:
    for output in outputs:
        if output.error is not None:
            raise output.error


def model_costs(
    block_model: BlockModel,
    measure: bool = True,
    timing_context: int = 16,
    repeats: int = 5,
    privacy_layers: int = 1,
) -> ModelCosts:
    """Costs of every block of ``block_model``, with measured decode times when ``measure``."""
    shape = shape_from_config(block_model.config)
    dtype = block_model.dtype
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    seconds = measure_decode_seconds(block_model, timing_context, repeats) if measure else None
    blocks = [(b.index, b.name, b.kind) for b in block_model.blocks]
    costs = block_costs(
        shape,
        blocks,
        block_param_bytes(block_model),
        dtype_bytes,
        privacy_layers=privacy_layers,
        seconds_per_token=seconds,
    )
    unique = {t.data_ptr(): t.numel() * t.element_size() for t in block_model.model.state_dict().values()}
    architectures = getattr(block_model.config, "architectures", None) or [shape.model_type]
    return ModelCosts(
        shape=shape,
        architecture=",".join(architectures),
        dtype=str(dtype).removeprefix("torch."),
        dtype_bytes=dtype_bytes,
        blocks=costs,
        unique_param_bytes=sum(unique.values()),
        timing_context=timing_context if measure else None,
    )


def costs_as_json(costs: ModelCosts, path: str, context: int) -> dict[str, Any]:
    """The ``edgesplit model inspect --json`` document (keys documented in the command's help)."""
    shape = costs.shape
    blocks = [
        {
            "index": b.index,
            "name": b.name,
            "kind": b.kind,
            "param_bytes": b.param_bytes,
            "kv_bytes_per_token": b.kv_bytes_per_token,
            "out_bytes_per_token": b.out_bytes_per_token,
            "out_bytes": b.out_bytes_per_token,
            "flops_per_token": b.flops.decode(context),
            "decode_flops": {"base": b.flops.decode_base, "per_context_token": b.flops.decode_per_context},
            "prefill_flops": {
                "fixed": b.flops.prefill_fixed,
                "linear": b.flops.prefill_linear,
                "quadratic": b.flops.prefill_quadratic,
            },
            "privacy": b.privacy,
            "ms_per_token": None if b.seconds_per_token is None else b.seconds_per_token * 1e3,
        }
        for b in costs.blocks
    ]
    model = {
        "path": path,
        "architecture": costs.architecture,
        "model_type": shape.model_type,
        "dtype": costs.dtype,
        "dtype_bytes": costs.dtype_bytes,
        "num_blocks": len(costs.blocks),
        "num_layers": shape.num_layers,
        "hidden_size": shape.hidden_size,
        "num_heads": shape.num_heads,
        "num_kv_heads": shape.num_kv_heads,
        "head_dim": shape.head_dim,
        "intermediate_size": shape.intermediate_size,
        "vocab_size": shape.vocab_size,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "param_bytes": costs.unique_param_bytes,
        "kv_bytes_per_token": sum(b.kv_bytes_per_token for b in costs.blocks),
        "context_tokens": context,
        "measured": costs.timing_context is not None,
    }
    return {"model": model, "blocks": blocks}


def costs_as_problem_blocks(costs: ModelCosts) -> list[dict[str, Any]]:
    """The ``blocks`` list of a planner problem file (DESIGN §4.2) from measured costs.

    ``work_ms`` is the measured decode time of each block (0 when not measured) and ``out_bytes``
    the per-token output on the wire, so a problem built from this is the model as profiled here.
    """
    return [
        {
            "name": b.name,
            "work_ms": (b.seconds_per_token or 0.0) * 1e3,
            "param_bytes": b.param_bytes,
            "kv_bytes_per_token": b.kv_bytes_per_token,
            "out_bytes": b.out_bytes_per_token,
            "privacy": b.privacy,
        }
        for b in costs.blocks
    ]
