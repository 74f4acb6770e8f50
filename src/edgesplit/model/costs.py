"""Per-block cost model of a decoder-only transformer: bytes, KV, activations, FLOPs, privacy.

Pure functions over a frozen ``ModelShape`` (read once from an HF config); no torch, no clock.
Formulas follow LLM-Viewer (research/papers.md §2); measured timings live in ``block_timing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

BlockKind = Literal["embedding", "layer", "head"]

TOKEN_ID_BYTES = 4
"""What the head returns to the source per token: one sampled token id as int32, not logits."""

# Families whose MLP is up → act → down (2 matrices); the rest are gated (gate, up, down: 3).
PLAIN_MLP_TYPES = frozenset({"gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "opt", "bloom", "falcon"})


@dataclass(frozen=True)
class ModelShape:
    """The sizes the cost formulas need, read from an HF config."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    gated_mlp: bool
    tie_word_embeddings: bool = False

    @property
    def attention_width(self) -> int:
        """n_heads · head_dim: the width of the query/output projections (d for most models)."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """n_kv_heads · head_dim: the width of each of K and V."""
        return self.num_kv_heads * self.head_dim


def shape_from_config(config: Any) -> ModelShape:
    """Read a ``ModelShape`` from an HF config (Llama/Qwen2/Mistral names, GPT-2 aliases)."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    model_type = str(getattr(config, "model_type", ""))
    intermediate = (
        getattr(config, "intermediate_size", None)
        or getattr(config, "n_inner", None)
        or getattr(config, "ffn_dim", None)
        or 4 * hidden
    )
    return ModelShape(
        model_type=model_type,
        hidden_size=hidden,
        num_layers=int(config.num_hidden_layers),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        intermediate_size=int(intermediate),
        vocab_size=int(config.vocab_size),
        gated_mlp=model_type not in PLAIN_MLP_TYPES,
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


# --- per-layer formulas (norms and biases ignored: < 0.1 % of a layer) ------------------------------


def attention_params(shape: ModelShape) -> int:
    """q and o: d × (n_h·d_h) each; k and v: d × (n_kv·d_h) each."""
    return 2 * shape.hidden_size * shape.attention_width + 2 * shape.hidden_size * shape.kv_width


def mlp_params(shape: ModelShape) -> int:
    """Gated (SwiGLU): 3 · d · ff; plain (GPT-2): 2 · d · ff."""
    return (3 if shape.gated_mlp else 2) * shape.hidden_size * shape.intermediate_size


def layer_matmul_params(shape: ModelShape) -> int:
    """Weights one transformer layer multiplies by per token (attention + MLP)."""
    return attention_params(shape) + mlp_params(shape)


def kv_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """KV cache one layer adds per token: K and V, each n_kv · d_h values."""
    return 2 * shape.kv_width * dtype_bytes


def activation_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """Hidden state crossing a cut after any layer, per token: d values."""
    return shape.hidden_size * dtype_bytes


def attention_flops_per_context_token(shape: ModelShape) -> int:
    """QKᵀ and softmax·V each 2 · n_h · d_h per attended position: 4·d·c at context c."""
    return 4 * shape.attention_width


def layer_decode_flops(shape: ModelShape, context: int) -> int:
    """One decode token through one layer attending ``context`` positions: 2·P + 4·d·c."""
    return 2 * layer_matmul_params(shape) + attention_flops_per_context_token(shape) * context


def layer_prefill_flops(shape: ModelShape, tokens: int) -> int:
    """A prompt of s tokens through one layer: 2·P·s + 4·d·s² (no causal halving, as LLM-Viewer)."""
    return 2 * layer_matmul_params(shape) * tokens + attention_flops_per_context_token(shape) * tokens**2


def head_flops_per_token(shape: ModelShape) -> int:
    """Final norm (ignored) and the LM head's d × V projection for one position."""
    return 2 * shape.hidden_size * shape.vocab_size


# --- per-block costs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockFlops:
    """FLOPs of one block as polynomials in the context length.

    decode(c)  = decode_base + decode_per_context · c        (one new token attending c positions)
    prefill(s) = prefill_fixed + prefill_linear · s + prefill_quadratic · s²   (a prompt of s tokens)

    The head's prefill is ``prefill_fixed``: only the last position is projected and sampled.
    """

    decode_base: int = 0
    decode_per_context: int = 0
    prefill_fixed: int = 0
    prefill_linear: int = 0
    prefill_quadratic: int = 0

    def decode(self, context: int) -> int:
        return self.decode_base + self.decode_per_context * context

    def prefill(self, tokens: int) -> int:
        return self.prefill_fixed + self.prefill_linear * tokens + self.prefill_quadratic * tokens**2


@dataclass(frozen=True)
class BlockCost:
    """Everything the planner and profiler need to know about one block.

    ``param_bytes`` counts every tensor the block needs on its own (a tied LM head counts in both
    the embedding and the head). ``out_bytes_per_token`` is what one token's output weighs on the
    wire: the hidden state for the embedding and layers, a 4-byte token id for the head.
    """

    index: int
    name: str
    kind: BlockKind
    param_bytes: int
    kv_bytes_per_token: int
    out_bytes_per_token: int
    flops: BlockFlops
    privacy: bool
    seconds_per_token: float | None = None
    """Measured decode time of this block alone on this machine; None when not measured."""


def block_flops(shape: ModelShape, kind: BlockKind) -> BlockFlops:
    """The FLOPs polynomials of a block of ``kind``; an embedding lookup counts as 0."""
    if kind == "layer":
        linear = 2 * layer_matmul_params(shape)
        quadratic = attention_flops_per_context_token(shape)
        return BlockFlops(linear, quadratic, 0, linear, quadratic)
    if kind == "head":
        head = head_flops_per_token(shape)
        return BlockFlops(decode_base=head, prefill_fixed=head)
    return BlockFlops()


def is_privacy_critical(kind: BlockKind, index: int, privacy_layers: int = 1) -> bool:
    """Default policy: the embedding, the head and the first ``privacy_layers`` layers.

    They see raw tokens (embedding, head) or activations from which the input is easily recovered
    (the first layers), so they stay on trusted nodes.
    """
    return kind != "layer" or index <= privacy_layers


def block_costs(
    shape: ModelShape,
    blocks: Sequence[tuple[int, str, BlockKind]],
    param_bytes: Sequence[int],
    dtype_bytes: int,
    privacy_layers: int = 1,
    seconds_per_token: Sequence[float] | None = None,
) -> list[BlockCost]:
    """Costs of each block, given its (index, name, kind), its tensors' bytes and the dtype width."""
    timed = seconds_per_token
    if len(param_bytes) != len(blocks) or (timed is not None and len(timed) != len(blocks)):
        raise ValueError("blocks, param_bytes and seconds_per_token must have one entry per block")
    costs = []
    for position, (index, name, kind) in enumerate(blocks):
        is_layer = kind == "layer"
        costs.append(
            BlockCost(
                index=index,
                name=name,
                kind=kind,
                param_bytes=int(param_bytes[position]),
                kv_bytes_per_token=kv_bytes_per_token(shape, dtype_bytes) if is_layer else 0,
                out_bytes_per_token=(
                    TOKEN_ID_BYTES if kind == "head" else activation_bytes_per_token(shape, dtype_bytes)
                ),
                flops=block_flops(shape, kind),
                privacy=is_privacy_critical(kind, index, privacy_layers),
                seconds_per_token=None if timed is None else float(timed[position]),
            )
        )
    return costs
