"""The adapter contract: how one model family's embedding, layers and head are called one by one.

Adapters only locate modules and call them; KV caches, batching and sampling live in segment.py.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgesplit.errors import UnsupportedArchitectureError


def get_submodule(model: nn.Module, path: str) -> nn.Module | None:
    """The module at dotted ``path`` under ``model``, or None when any part is missing."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


class BlockAdapter(ABC):
    """Runs one family's blocks separately: embedding, layer i, head.

    A model may be partially materialised (blocks outside a segment left on the meta device), so an
    adapter never touches a module unless asked to run the block that owns it.
    """

    family: str = "abstract"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config: Any = model.config

    # --- layout -------------------------------------------------------------------------------

    @property
    @abstractmethod
    def layers(self) -> Sequence[nn.Module]:
        """The decoder layers, in execution order."""

    @abstractmethod
    def embed_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes (each ending in '.') of the embedding block's modules."""

    @abstractmethod
    def layer_prefix(self, layer_index: int) -> str:
        """State-dict prefix (ending in '.') of decoder layer ``layer_index``."""

    @abstractmethod
    def head_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the head block: final norm and LM head."""

    # --- execution ----------------------------------------------------------------------------

    @abstractmethod
    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) at absolute positions (B, T) → hidden states (B, T, D)."""

    def position_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> Any:
        """What every layer of a segment shares for these positions (rotary cos/sin), or None."""
        return None

    @abstractmethod
    def run_layer(
        self,
        layer_index: int,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        position_embeddings: Any,
        cache: Any,
    ) -> torch.Tensor:
        """One decoder layer: hidden (B, T, D) → (B, T, D); ``cache.update`` receives its new K/V."""

    @abstractmethod
    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm + LM head: hidden (B, T, D) → logits (B, T, V)."""

    def sliding_window(self, layer_index: int) -> int | None:
        """How many positions back layer ``layer_index`` may attend (None: the whole context)."""
        return None

    def max_positions(self) -> int | None:
        """The longest context the position embeddings allow, when the model has such a limit."""
        return None

    def rebuild_non_persistent(self) -> None:
        """Recreate buffers that checkpoints do not store (rotary frequencies) after a meta build."""
        return None


def require(module: nn.Module | None, what: str, model: nn.Module) -> nn.Module:
    """``module`` or an UnsupportedArchitectureError naming the architecture and what is missing."""
    if module is None:
        raise UnsupportedArchitectureError(
            f"cannot split {type(model).__name__}: no {what} found; "
            "supported families are llama, qwen2, mistral, gpt2 and models with the usual layer layout"
        )
    return module


def cache_kwarg_name(layer: nn.Module) -> str:
    """The name a decoder layer takes its KV cache under: ``past_key_values`` (transformers 4.x),
    ``cache`` (5.x), or an older spelling."""
    params = inspect.signature(layer.forward).parameters
    for name in ("past_key_values", "cache", "past_key_value", "layer_past"):
        if name in params:
            return name
    return "cache"
