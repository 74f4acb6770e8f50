"""Generic adapter: any rotary or position-free decoder whose layers are a ModuleList at a usual path.

Finds the modules by name; load_block_model's coverage check refuses models with parameters outside
the blocks found here (e.g. learned position tables), so a partial match cannot run silently wrong.
"""

from __future__ import annotations

from torch import nn

from edgesplit.model.adapters.base import get_submodule, require
from edgesplit.model.adapters.rotary import RotaryDecoderAdapter

LAYER_PATHS = (
    "model.layers",
    "transformer.h",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.layers",
)
NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")


class GenericAdapter(RotaryDecoderAdapter):
    """The rotary calling convention over module paths discovered at load time."""

    family = "generic"

    def __init__(self, model: nn.Module) -> None:
        self.layers_path = _first_existing(model, LAYER_PATHS, "decoder layer list")
        base_path = self.layers_path.rpartition(".")[0]
        self.embed_path = _path_of(model, model.get_input_embeddings(), "input embedding")  # type: ignore[operator]
        self.head_path = _path_of(model, model.get_output_embeddings(), "output embedding")  # type: ignore[operator]
        self.norm_path = _first_existing(model, tuple(f"{base_path}.{n}" for n in NORM_NAMES), "final norm")
        rotary = f"{base_path}.rotary_emb"
        self.rotary_path = rotary if get_submodule(model, rotary) is not None else None
        super().__init__(model)

    def sliding_window(self, layer_index: int) -> int | None:
        """Per-layer ``layer_types`` when the config has them, else one window for all layers."""
        window = getattr(self.config, "sliding_window", None)
        layer_types = getattr(self.config, "layer_types", None)
        if not window:
            return None
        if layer_types:
            return int(window) if layer_types[layer_index] == "sliding_attention" else None
        return int(window)


def _first_existing(model: nn.Module, paths: tuple[str, ...], what: str) -> str:
    for path in paths:
        if get_submodule(model, path) is not None:
            return path
    require(None, f"{what} (looked at {', '.join(paths)})", model)
    raise AssertionError("unreachable")


def _path_of(model: nn.Module, module: nn.Module | None, what: str) -> str:
    for name, candidate in model.named_modules():
        if module is not None and candidate is module and name:
            return str(name)
    require(None, what, model)
    raise AssertionError("unreachable")
