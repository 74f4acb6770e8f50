"""Adapter for decoder-only models with rotary positions (Llama layout: embed, layers, norm, lm_head).

Shared by the llama, mistral, qwen2 and generic adapters; they differ only in where modules live and
in their sliding windows. Knows nothing about caches beyond handing one to each layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from edgesplit.model.adapters.base import BlockAdapter, cache_kwarg_name, get_submodule, require


class RotaryDecoderAdapter(BlockAdapter):
    """Llama-style decoder found at the given module paths (defaults: the Llama layout)."""

    family = "rotary"
    layers_path = "model.layers"
    embed_path = "model.embed_tokens"
    norm_path = "model.norm"
    head_path = "lm_head"
    rotary_path: str | None = "model.rotary_emb"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        layers = require(get_submodule(model, self.layers_path), f"layer list at {self.layers_path}", model)
        if not isinstance(layers, nn.ModuleList):
            require(None, f"ModuleList at {self.layers_path}", model)
        self._layers: nn.ModuleList = layers  # type: ignore[assignment]
        self._embed = require(get_submodule(model, self.embed_path), f"embedding at {self.embed_path}", model)
        self._norm = require(get_submodule(model, self.norm_path), f"final norm at {self.norm_path}", model)
        self._head = require(get_submodule(model, self.head_path), f"LM head at {self.head_path}", model)
        self._cache_kwarg = cache_kwarg_name(self._layers[0]) if len(self._layers) else "cache"

    @property
    def layers(self) -> Sequence[nn.Module]:
        return cast(Sequence[nn.Module], self._layers)

    def embed_prefixes(self) -> tuple[str, ...]:
        return (self.embed_path + ".",)

    def layer_prefix(self, layer_index: int) -> str:
        return f"{self.layers_path}.{layer_index}."

    def head_prefixes(self) -> tuple[str, ...]:
        return (self.norm_path + ".", self.head_path + ".")

    def _rotary(self) -> nn.Module | None:
        return get_submodule(self.model, self.rotary_path) if self.rotary_path else None

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self._embed(input_ids)  # type: ignore[no-any-return]

    def position_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> Any:
        rotary = self._rotary()
        return None if rotary is None else rotary(hidden, position_ids=position_ids)

    def run_layer(
        self,
        layer_index: int,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        position_embeddings: Any,
        cache: Any,
    ) -> torch.Tensor:
        out = self._layers[layer_index](
            hidden,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            position_embeddings=position_embeddings,
            **{self._cache_kwarg: cache},
        )
        return out[0] if isinstance(out, tuple) else out  # type: ignore[no-any-return]

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._head(self._norm(hidden))  # type: ignore[no-any-return]

    def max_positions(self) -> int | None:
        return None  # rotary positions extrapolate; the model's quality limit is not ours to enforce

    def rebuild_non_persistent(self) -> None:
        """Rotary frequencies are not in checkpoints: rebuild the module on the CPU from the config."""
        rotary = self._rotary()
        if rotary is None or self.rotary_path is None:
            return
        if any(buf.is_meta for buf in rotary.buffers()):
            parent_path, _, name = self.rotary_path.rpartition(".")
            parent = self.model.get_submodule(parent_path) if parent_path else self.model
            setattr(parent, name, type(rotary)(config=rotary.config))
