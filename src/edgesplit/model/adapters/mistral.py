"""Mistral family adapter: the Llama layout with one sliding window for every layer."""

from __future__ import annotations

from edgesplit.model.adapters.rotary import RotaryDecoderAdapter


class MistralAdapter(RotaryDecoderAdapter):
    """Mistral: like Llama, but each layer attends at most ``config.sliding_window`` positions back."""

    family = "mistral"

    def sliding_window(self, layer_index: int) -> int | None:
        window = getattr(self.config, "sliding_window", None)
        return int(window) if window else None
