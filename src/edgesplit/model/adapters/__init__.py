"""One small adapter per model family, chosen by ``config.model_type``; generic for the rest."""

from __future__ import annotations

from torch import nn

from edgesplit.model.adapters.base import BlockAdapter
from edgesplit.model.adapters.generic import GenericAdapter
from edgesplit.model.adapters.gpt2 import GPT2Adapter
from edgesplit.model.adapters.llama import LlamaAdapter
from edgesplit.model.adapters.mistral import MistralAdapter
from edgesplit.model.adapters.qwen2 import Qwen2Adapter

FAMILIES: dict[str, type[BlockAdapter]] = {
    "llama": LlamaAdapter,
    "mistral": MistralAdapter,
    "qwen2": Qwen2Adapter,
    "gpt2": GPT2Adapter,
}


def adapter_for(model: nn.Module) -> BlockAdapter:
    """The family adapter for ``model`` (by ``config.model_type``), else the generic one.

    Raises UnsupportedArchitectureError naming the architecture when no layer list is found.
    """
    model_type = getattr(model.config, "model_type", "")
    return FAMILIES.get(model_type, GenericAdapter)(model)


__all__ = ["FAMILIES", "BlockAdapter", "adapter_for"]
