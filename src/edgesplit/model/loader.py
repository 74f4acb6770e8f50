"""Loading a local Hugging Face decoder-only checkpoint and seeing it as blocks.

Blocks: 0 = embedding, 1..n = decoder layers 0..n-1, n+1 = head (final norm + LM head + sampling).
Never touches the network (``local_files_only``); errors name the folder and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgesplit.errors import ModelLoadError, UnsupportedArchitectureError
from edgesplit.model.adapters import BlockAdapter, adapter_for

BlockKind = Literal["embedding", "layer", "head"]


@dataclass(frozen=True)
class BlockInfo:
    """One block of the model: its index, a stable name (``embed``, ``layer.3``, ``head``) and kind."""

    index: int
    name: str
    kind: BlockKind


class BlockModel:
    """A causal LM as an ordered list of blocks, possibly only partly materialised.

    ``model`` is the HF module tree; blocks outside ``materialized`` hold meta tensors (a segment
    loaded from shards) and must not be run.
    """

    def __init__(self, model: nn.Module, adapter: BlockAdapter, materialized: Iterable[int] | None = None):
        self.model = model
        self.adapter = adapter
        self.config: Any = model.config
        n_layers = len(adapter.layers)
        self.blocks: list[BlockInfo] = [
            BlockInfo(0, "embed", "embedding"),
            *(BlockInfo(i + 1, f"layer.{i}", "layer") for i in range(n_layers)),
            BlockInfo(n_layers + 1, "head", "head"),
        ]
        self.materialized = frozenset(range(len(self.blocks)) if materialized is None else materialized)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_layers(self) -> int:
        return len(self.blocks) - 2

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = next(t.dtype for t in self.model.state_dict().values() if t.is_floating_point())
        return dtype

    def block_prefixes(self, index: int) -> tuple[str, ...]:
        """State-dict prefixes of the modules that block ``index`` runs."""
        self._check_index(index)
        if index == 0:
            return self.adapter.embed_prefixes()
        if index == self.num_blocks - 1:
            return self.adapter.head_prefixes()
        return (self.adapter.layer_prefix(index - 1),)

    def block_state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """The tensors block ``index`` needs, under their checkpoint names.

        Tied weights appear in every block that uses them (a tied LM head appears in the embedding
        and the head), so each block's shard stands alone.
        """
        prefixes = self.block_prefixes(index)
        return {k: v for k, v in self.model.state_dict().items() if k.startswith(prefixes)}

    def check_coverage(self) -> None:
        """Every parameter and persistent buffer must belong to some block, else we cannot split."""
        prefixes = tuple(p for i in range(self.num_blocks) for p in self.block_prefixes(i))
        orphans = [k for k in self.model.state_dict() if not k.startswith(prefixes)]
        if orphans:
            raise UnsupportedArchitectureError(
                f"cannot split {type(self.model).__name__}: tensors {', '.join(orphans[:3])} "
                "belong to no block (embedding, layer or head)"
            )

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_blocks:
            raise IndexError(f"block {index} out of range 0:{self.num_blocks}")


def check_checkpoint_dir(path: Path) -> None:
    """A ModelLoadError unless ``path`` is a folder with a config.json."""
    if not path.exists():
        raise ModelLoadError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory; pass a Hugging Face checkpoint folder")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json; it is not a Hugging Face checkpoint")


def load_config(path: Path) -> Any:
    """The checkpoint's config, refusing encoder-decoders and models with no causal-LM class."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises ValueError/OSError/JSONDecodeError variously
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {_first_line(exc)}") from exc
    arch = ",".join(getattr(config, "architectures", None) or [type(config).__name__.removesuffix("Config")])
    if (
        getattr(config, "is_encoder_decoder", False)
        or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    ):
        raise UnsupportedArchitectureError(
            f"cannot split {arch} (model_type {config.model_type!r}): not a decoder-only causal LM"
        )
    return config


def load_block_model(path: Path | str, dtype: torch.dtype = torch.float32) -> BlockModel:
    """Load a local HF causal-LM checkpoint in ``dtype`` and expose it as blocks.

    Raises ModelLoadError (missing folder, unreadable config, missing or corrupt weights) or
    UnsupportedArchitectureError (naming the architecture) when the model cannot be split.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    check_checkpoint_dir(path)
    config = load_config(path)
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            path, config=config, local_files_only=True, dtype=dtype, output_loading_info=True
        )
    except Exception as exc:  # safetensors, OSError, RuntimeError on size mismatch
        raise ModelLoadError(f"cannot load weights from {path}: {_first_line(exc)}") from exc
    model, info = loaded
    missing = [k for k in info.get("missing_keys", []) if k not in _tied_keys(model)]
    if missing:
        raise ModelLoadError(
            f"checkpoint {path} is incomplete: {len(missing)} tensors missing (e.g. {sorted(missing)[0]})"
        )
    model.eval()
    block_model = BlockModel(model, adapter_for(model))
    block_model.check_coverage()
    return block_model


def load_tokenizer(path: Path | str) -> Any:
    """The checkpoint's own tokenizer (AutoTokenizer, local files only)."""
    from transformers import AutoTokenizer

    path = Path(path)
    check_checkpoint_dir(path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {_first_line(exc)}") from exc


def resolve_model_dir(spec: str) -> Path:
    """A checkpoint folder from a ``--model`` value: a path, or ``builtin:NAME`` (built on demand)."""
    if not spec.startswith("builtin:"):
        return Path(spec)
    try:
        from edgesplit.model import builtin
    except ImportError as exc:
        raise ModelLoadError(f"built-in models are not available in this install ({spec})") from exc
    resolve = getattr(builtin, "resolve_builtin", None)
    if resolve is None:
        raise ModelLoadError(f"built-in models cannot be resolved yet ({spec}); pass a checkpoint folder")
    return Path(resolve(spec.removeprefix("builtin:")))


def _tied_keys(model: nn.Module) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if isinstance(tied, dict | list | set | tuple) else set()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
