"""Llama family adapter (LlamaForCausalLM): the rotary layout with full attention in every layer."""

from __future__ import annotations

from edgesplit.model.adapters.rotary import RotaryDecoderAdapter


class LlamaAdapter(RotaryDecoderAdapter):
    """Llama: embed_tokens → layers → norm → lm_head, rotary shared by all layers."""

    family = "llama"
