"""GPT-2 family adapter: learned absolute positions added in the embedding block, Conv1D layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from edgesplit.model.adapters.base import BlockAdapter, cache_kwarg_name, get_submodule, require


class GPT2Adapter(BlockAdapter):
    """GPT-2: wte + wpe → h[i] → ln_f → lm_head (tied to wte by default)."""

    family = "gpt2"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        layers = require(get_submodule(model, "transformer.h"), "layer list at transformer.h", model)
        self._layers: nn.ModuleList = layers  # type: ignore[assignment]
        self._wte = require(get_submodule(model, "transformer.wte"), "token embedding", model)
        self._wpe = require(get_submodule(model, "transformer.wpe"), "position embedding", model)
        self._ln_f = require(get_submodule(model, "transformer.ln_f"), "final norm", model)
        self._head = require(get_submodule(model, "lm_head"), "LM head", model)
        self._cache_kwarg = cache_kwarg_name(self._layers[0]) if len(self._layers) else "cache"

    @property
    def layers(self) -> Sequence[nn.Module]:
        return cast(Sequence[nn.Module], self._layers)

    def embed_prefixes(self) -> tuple[str, ...]:
        return ("transformer.wte.", "transformer.wpe.")

    def layer_prefix(self, layer_index: int) -> str:
        return f"transformer.h.{layer_index}."

    def head_prefixes(self) -> tuple[str, ...]:
        return ("transformer.ln_f.", "lm_head.")

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self._wte(input_ids) + self._wpe(position_ids)  # type: ignore[no-any-return]

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
            hidden, attention_mask=attention_mask, use_cache=True, **{self._cache_kwarg: cache}
        )
        return out[0] if isinstance(out, tuple) else out  # type: ignore[no-any-return]

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._head(self._ln_f(hidden))  # type: ignore[no-any-return]

    def max_positions(self) -> int | None:
        return int(self.config.n_positions)
