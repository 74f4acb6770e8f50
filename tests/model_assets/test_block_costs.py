"""Cost formulas against independent hand values (research/papers.md §2 table) and real module shapes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.model.costs import (
    TOKEN_ID_BYTES,
    ModelShape,
    activation_bytes_per_token,
    attention_flops_per_context_token,
    block_costs,
    block_flops,
    is_privacy_critical,
    kv_bytes_per_token,
    layer_decode_flops,
    layer_matmul_params,
    layer_prefill_flops,
    shape_from_config,
)

FP16 = 2


def shape(d: int, heads: int, kv_heads: int, ff: int, gated: bool = True, layers: int = 32) -> ModelShape:
    return ModelShape("x", d, layers, heads, kv_heads, d // heads, ff, 32000, gated)


# papers.md §2 "Derived table" (fp16): params/block, decode FLOPs at c=0, attention FLOPs per context
# token, KV bytes/token/block, activation bytes/token — as printed there (rounded).
PAPER_TABLE = {
    "gpt2-small": (shape(768, 12, 12, 3072, gated=False, layers=12), 7.1e6, 14e6, 3072, 3072, 1536),
    "qwen2.5-0.5b": (shape(896, 14, 2, 4864, layers=24), 14.9e6, 30e6, 3584, 512, 1792),
    "tinyllama-1.1b": (shape(2048, 32, 4, 5632, layers=22), 44.0e6, 88e6, 8192, 1024, 4096),
    "llama-2-7b": (shape(4096, 32, 32, 11008), 202.4e6, 0.405e9, 16384, 16384, 8192),
    "llama-3-8b": (shape(4096, 32, 8, 14336), 218.1e6, 0.436e9, 16384, 4096, 8192),
    "llama-2-70b": (shape(8192, 64, 8, 28672, layers=80), 855.6e6, 1.71e9, 32768, 4096, 16384),
}


@pytest.mark.parametrize("name", sorted(PAPER_TABLE))
def test_formulas_reproduce_the_survey_table(name: str) -> None:
    s, params, flops0, attn, kv, act = PAPER_TABLE[name]
    assert layer_matmul_params(s) == pytest.approx(params, rel=0.005)
    assert layer_decode_flops(s, context=0) == pytest.approx(flops0, rel=0.02)
    assert attention_flops_per_context_token(s) == attn
    assert kv_bytes_per_token(s, FP16) == kv
    assert activation_bytes_per_token(s, FP16) == act


def test_exact_hand_counts_for_gpt2_small_and_llama2_7b() -> None:
    gpt2, *_ = PAPER_TABLE["gpt2-small"]
    # 4·768² (q, k, v, o) + 2·768·3072 (fc, proj)
    assert layer_matmul_params(gpt2) == 2_359_296 + 4_718_592
    llama, *_ = PAPER_TABLE["llama-2-7b"]
    # 4·4096² + 3·4096·11008
    assert layer_matmul_params(llama) == 67_108_864 + 135_266_304
    # decode at context 100: 2·P + 4·d·100
    assert layer_decode_flops(llama, 100) == 2 * 202_375_168 + 4 * 4096 * 100
    # 512-token prefill activation crossing a cut: 0.79 MB for GPT-2 small in fp16 (papers.md)
    assert 512 * activation_bytes_per_token(gpt2, FP16) == pytest.approx(0.79e6, rel=0.01)


def test_shape_from_hf_default_configs() -> None:
    """transformers' default GPT2Config is GPT-2 small and LlamaConfig is Llama-2-7B."""
    from transformers import GPT2Config, LlamaConfig

    gpt2 = shape_from_config(GPT2Config())
    assert (gpt2.hidden_size, gpt2.num_layers, gpt2.intermediate_size, gpt2.gated_mlp) == (
        768,
        12,
        3072,
        False,
    )
    assert layer_matmul_params(gpt2) == 7_077_888
    llama = shape_from_config(LlamaConfig())
    assert (llama.num_kv_heads, llama.head_dim, llama.gated_mlp) == (32, 128, True)
    assert layer_matmul_params(llama) == 202_375_168


def _meta_layer_matmul_params(model: torch.nn.Module) -> int:
    """Weights of matrices (≥ 2-D, not embeddings) inside the first decoder layer of a real HF model."""
    layer = model.model.layers[0] if hasattr(model, "model") else model.transformer.h[0]
    return sum(p.numel() for p in layer.parameters() if p.dim() == 2)


@settings(max_examples=25, deadline=None)
@given(
    head_dim=st.sampled_from([8, 16, 32]),
    heads=st.integers(1, 8),
    kv_divisor=st.sampled_from([1, 2, 4]),
    ff=st.integers(8, 300),
    family=st.sampled_from(["llama", "qwen2", "mistral", "gpt2"]),
)
def test_matmul_params_equal_the_real_layer(
    head_dim: int, heads: int, kv_divisor: int, ff: int, family: str
) -> None:
    """Oracle: instantiate the real HF layer on the meta device and count its matrices."""
    from transformers import AutoConfig, AutoModelForCausalLM

    d = heads * head_dim
    kv_heads = heads // kv_divisor if heads % kv_divisor == 0 else heads
    if family == "gpt2":
        config = AutoConfig.for_model("gpt2", n_embd=d, n_head=heads, n_layer=1, n_inner=ff, vocab_size=64)
    else:
        config = AutoConfig.for_model(
            family,
            hidden_size=d,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=ff,
            num_hidden_layers=1,
            vocab_size=64,
        )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert layer_matmul_params(shape_from_config(config)) == _meta_layer_matmul_params(model)


@given(context=st.integers(0, 10_000), tokens=st.integers(1, 4096))
def test_flops_polynomials(context: int, tokens: int) -> None:
    s, *_ = PAPER_TABLE["llama-3-8b"]
    layer = block_flops(s, "layer")
    assert layer.decode(context) == layer_decode_flops(s, context)
    assert layer.prefill(tokens) == layer_prefill_flops(s, tokens)
    # One prompt token attending itself costs what one decode token attending one position costs.
    assert layer.prefill(1) == layer.decode(1)
    head = block_flops(s, "head")
    assert head.decode(context) == head.prefill(tokens) == 2 * 4096 * 32000  # only the last position
    assert block_flops(s, "embedding").decode(context) == 0


def test_block_costs_sizes_and_default_privacy() -> None:
    s = shape(64, 4, 2, 176, layers=4)
    blocks = (
        [(0, "embed", "embedding")]
        + [(i, f"layer.{i - 1}", "layer") for i in range(1, 5)]
        + [(5, "head", "head")]
    )
    costs = block_costs(s, blocks, [100, 1, 2, 3, 4, 200], dtype_bytes=4, seconds_per_token=[0.5] * 6)
    assert [c.privacy for c in costs] == [True, True, False, False, False, True]
    assert [c.kv_bytes_per_token for c in costs] == [0, 256, 256, 256, 256, 0]  # 2·2·16·4
    assert [c.out_bytes_per_token for c in costs] == [256] * 5 + [TOKEN_ID_BYTES]
    assert [c.param_bytes for c in costs] == [100, 1, 2, 3, 4, 200]
    assert all(c.seconds_per_token == 0.5 for c in costs)
    assert is_privacy_critical("layer", 2, privacy_layers=2) and not is_privacy_critical("layer", 3, 2)
    with pytest.raises(ValueError, match="one entry per block"):
        block_costs(s, blocks, [1, 2], dtype_bytes=4)
