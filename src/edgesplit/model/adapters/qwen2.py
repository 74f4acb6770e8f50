"""Qwen2 family adapter: the Llama layout where ``config.layer_types`` marks sliding-window layers."""

from __future__ import annotations

from edgesplit.model.adapters.rotary import RotaryDecoderAdapter


class Qwen2Adapter(RotaryDecoderAdapter):
    """Qwen2: like Llama (with q/k/v biases), sliding window only on layers typed so."""

    family = "qwen2"

    def sliding_window(self, layer_index: int) -> int | None:
        layer_types = getattr(self.config, "layer_types", None)
        window = getattr(self.config, "sliding_window", None)
        if not window or not layer_types or layer_types[layer_index] != "sliding_attention":
            return None
        return int(window)
