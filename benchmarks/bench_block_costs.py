"""Per-block decode cost on this machine vs the cost formulas, for a built-in model.

Run: python benchmarks/bench_block_costs.py --arch llama --preset base --contexts 16,512 \
         [--threads 1] [--record]

Prints, per context: each block kind's measured ms/token (median over blocks of that kind), the FLOP
rate and weight-streaming rate that implies, and Σ single-block times vs one whole-model segment
(so the per-block profile the planner uses can be checked against the real chain). Also the time
to build the preset (`edgesplit model init`) from nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from harness import measure, record

from edgesplit.model.block_profile import model_costs
from edgesplit.model.builtin import init_model, resolve_model
from edgesplit.model.loader import BlockModel, load_block_model
from edgesplit.model.segment import SegmentRunner
from edgesplit.model.steps import SegmentStep


def whole_model_decode_s(block_model: BlockModel, context: int, repeats: int) -> float:
    """Median seconds of one decode step through all blocks as one segment, at ``context``."""
    runner = SegmentRunner(block_model, 0, block_model.num_blocks)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, block_model.vocab_size, (context + 1,), generator=generator)
    runner.step([SegmentStep("bench", ids[:context], 0)])
    step = [SegmentStep("bench", ids[context:], context)]
    return measure("whole", lambda: runner.step(step), repeats=repeats, warmup=2).median_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="llama")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--contexts", default="16,512")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-build-timing", action="store_true")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    figures: dict[str, object] = {"arch": args.arch, "preset": args.preset}
    figures["threads"] = torch.get_num_threads()
    if not args.skip_build_timing:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            init_model(Path(tmp) / "m", args.arch, args.preset)
            figures["build_s"] = time.perf_counter() - start
        print(f"build {args.arch}-{args.preset}: {figures['build_s']:.1f} s")
    path = resolve_model(f"builtin:{args.arch}-{args.preset}")
    block_model = load_block_model(path)
    print(f"{path}: {block_model.num_layers} layers, threads={torch.get_num_threads()}")
    print(
        "context | embed ms | layer ms | head ms | layer GFLOP/s | layer weights GB/s "
        "| Σ blocks ms | whole ms | Σ/whole"
    )
    for context in (int(c) for c in args.contexts.split(",")):
        costs = model_costs(block_model, measure=True, timing_context=context, repeats=args.repeats)
        layers = [b for b in costs.blocks if b.kind == "layer"]
        layer_s = statistics.median(b.seconds_per_token or 0.0 for b in layers)
        embed_s = costs.blocks[0].seconds_per_token or 0.0
        head_s = costs.blocks[-1].seconds_per_token or 0.0
        gflops = layers[0].flops.decode(context) / layer_s / 1e9
        weights_gbps = layers[0].param_bytes / layer_s / 1e9
        total_s = sum(b.seconds_per_token or 0.0 for b in costs.blocks)
        whole_s = whole_model_decode_s(block_model, context, args.repeats)
        row = {
            "embed_ms": embed_s * 1e3,
            "layer_ms": layer_s * 1e3,
            "head_ms": head_s * 1e3,
            "layer_gflops": gflops,
            "layer_weights_gbps": weights_gbps,
            "sum_blocks_ms": total_s * 1e3,
            "whole_ms": whole_s * 1e3,
        }
        figures[f"context_{context}"] = row
        print(
            f"{context:7d} | {row['embed_ms']:8.3f} | {row['layer_ms']:8.2f} | {row['head_ms']:7.2f} | "
            f"{gflops:13.1f} | {weights_gbps:18.2f} | {row['sum_blocks_ms']:11.1f} | "
            f"{row['whole_ms']:8.1f} | {total_s / whole_s:7.2f}"
        )
    if args.record:
        print(f"recorded {record('block_costs', figures)}")


if __name__ == "__main__":
    main()
