"""Built-in random-weight models of real architectures, and resolving `builtin:` model specs.

Owns the presets, the deterministic weight initialisation and the local model cache; writes normal
Hugging Face checkpoints and never touches the network.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesplit.errors import ModelLoadError, UnsupportedArchitectureError, UserInputError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

ARCHS: tuple[str, ...] = ("llama", "qwen2", "mistral", "gpt2")
PRESETS: tuple[str, ...] = ("tiny", "small", "base")
BUILTIN_PREFIX = "builtin:"
# Bump when presets, initialisation or the tokenizer change, so stale cached builds are not reused.
BUILTIN_VERSION = 3


@dataclass(frozen=True)
class PresetShape:
    """Size of one preset; ``kv_heads`` per family gives Llama-2 MHA and Qwen2/Mistral GQA."""

    hidden: int
    layers: int
    heads: int
    kv_heads: dict[str, int]
    intermediate: int  # SwiGLU width; GPT-2 uses 4·hidden
    vocab: int
    max_positions: int


PRESET_SHAPES: dict[str, PresetShape] = {
    # ~0.2 M params: a forward pass takes milliseconds.
    "tiny": PresetShape(64, 4, 4, {"llama": 4, "qwen2": 2, "mistral": 2, "gpt2": 4}, 176, 512, 512),
    # ~30 M params.
    "small": PresetShape(512, 8, 8, {"llama": 8, "qwen2": 2, "mistral": 4, "gpt2": 8}, 1408, 8192, 2048),
    # ~250-320 M params: realistic timing and memory on a CPU.
    "base": PresetShape(1024, 20, 16, {"llama": 16, "qwen2": 4, "mistral": 8, "gpt2": 16}, 2816, 32000, 4096),
}


@dataclass(frozen=True)
class BuiltinSpec:
    """A built-in model: family, preset and weight seed (the tokenizer does not depend on the seed)."""

    arch: str
    preset: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UnsupportedArchitectureError(
                f"unknown architecture {self.arch!r}; built-in models exist for {', '.join(ARCHS)}"
            )
        if self.preset not in PRESETS:
            raise UserInputError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.seed < 0:
            raise UserInputError(f"seed must be >= 0, got {self.seed}")

    @property
    def cache_name(self) -> str:
        return f"{self.arch}-{self.preset}-seed{self.seed}-v{BUILTIN_VERSION}"


def build_config(arch: str, preset: str, token_ids: dict[str, int | None] | None = None) -> PretrainedConfig:
    """The HF config of a built-in model; ``token_ids`` gives bos/eos/pad ids from its tokenizer."""
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    BuiltinSpec(arch, preset)  # validates
    shape = PRESET_SHAPES[preset]
    kv_heads = shape.kv_heads[arch]
    common: dict[str, Any] = {"vocab_size": shape.vocab, "dtype": "float32", **(token_ids or {})}
    if arch == "gpt2":
        return GPT2Config(
            n_embd=shape.hidden,
            n_layer=shape.layers,
            n_head=shape.heads,
            n_inner=4 * shape.hidden,
            n_positions=shape.max_positions,
            **common,
        )
    decoder: dict[str, Any] = {
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": shape.intermediate,
        "max_position_embeddings": shape.max_positions,
        **common,
    }
    if arch == "llama":
        return LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 10_000.0}, **decoder)
    if arch == "mistral":
        return MistralConfig(
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            sliding_window=None,
            **decoder,
        )
    # Qwen2's small models tie the LM head to the embedding, as Qwen2-0.5B does.
    return Qwen2Config(
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
        **decoder,
    )


_EMBED_SCALE = 0.25
_QK_GAIN = 2.0
_FINAL_NORMS = ("model.norm", "transformer.ln_f")


def _initialise(model: torch.nn.Module, tied: bool, seed: int) -> None:
    """Fill every parameter from one seeded generator, module by module in registration order.

    Scale-free "fan-in" init, tuned so a random model's greedy output is not degenerate:

    * matrices N(0, 1/fan_in); query and key projections ×2, so attention scores have a spread of
      ~4 at any width: near-uniform attention would average the context into one constant
      vector and the model would repeat one token;
    * GPT-2's MLP output projection centred over its input, so GELU's positive mean adds no
      constant direction to the residual stream;
    * embeddings N(0, 0.25²/hidden): small next to the layers' updates, so a tied head does not
      just predict the input token again; with a tied head the final norm is ×4, keeping logits at
      unit spread (far from ties, so greedy decoding is stable under float noise);
    * norm weights 1 + N(0, 0.02) and all biases N(0, 0.02), so splitting bugs in those paths show.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if id(param) in seen:  # tied weights are initialised once
                    continue
                seen.add(id(param))
                if param_name == "bias":
                    param.normal_(0.0, 0.02, generator=generator)
                elif isinstance(module, torch.nn.Embedding):
                    param.normal_(0.0, _EMBED_SCALE / math.sqrt(param.shape[1]), generator=generator)
                elif isinstance(module, torch.nn.Linear | Conv1D):
                    fan_in = param.shape[0] if isinstance(module, Conv1D) else param.shape[1]
                    param.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
                    _shape_projection(module_name, param)
                elif param.dim() == 1:  # LayerNorm / RMSNorm scale
                    param.normal_(1.0, 0.02, generator=generator)
                    if tied and module_name in _FINAL_NORMS:
                        param.mul_(1.0 / _EMBED_SCALE)
                else:
                    kind = type(module).__name__
                    raise RuntimeError(f"no init rule for {module_name}.{param_name} ({kind})")


def _shape_projection(module_name: str, weight: torch.Tensor) -> None:
    """The per-projection adjustments of ``_initialise`` (in place, no randomness)."""
    if module_name.endswith(("q_proj", "k_proj")):
        weight.mul_(_QK_GAIN)
    elif module_name.endswith("attn.c_attn"):  # GPT-2 Conv1D (d, 3d): q, k, v side by side
        weight[:, : 2 * weight.shape[0]].mul_(_QK_GAIN)
    elif module_name.endswith("mlp.c_proj"):  # GPT-2 Conv1D (ff, d)
        weight.sub_(weight.mean(dim=0, keepdim=True))


def init_model(out: Path, arch: str, preset: str, seed: int = 0) -> Path:
    """Write a built-in model (config, safetensors weights, tokenizer) into ``out``; return ``out``.

    Same (arch, preset, seed) → byte-identical ``model.safetensors``. Existing files of the same
    names in ``out`` are overwritten.
    """
    spec = BuiltinSpec(arch, preset, seed)
    out = Path(out)
    ensure_writable_dir(out)
    from edgesplit.model.tokenizer_build import build_tokenizer, special_token_ids

    shape = PRESET_SHAPES[spec.preset]
    tokenizer = build_tokenizer(spec.arch, shape.vocab, shape.max_positions)
    config = build_config(spec.arch, spec.preset, special_token_ids(spec.arch, tokenizer))
    model = _random_model(config, seed)
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    _save_quietly(model, tokenizer, out)
    return out


def _random_model(config: PretrainedConfig, seed: int) -> Any:
    """Build the model without its default (slow, global-RNG) init, then fill it from ``seed``."""
    import torch
    from transformers import AutoModelForCausalLM

    skip_init: Any = contextlib.nullcontext  # older transformers: pay for the default init
    with contextlib.suppress(ImportError):
        from transformers.initialization import no_init_weights as skip_init

    with skip_init():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()  # skipped along with the default init
    _initialise(model, bool(config.tie_word_embeddings), seed)
    model.eval()
    return model


def _save_quietly(model: Any, tokenizer: Any, out: Path) -> None:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    except OSError as exc:
        raise UserInputError(f"cannot write the model to {out}: {exc.strerror or exc}") from exc
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def ensure_writable_dir(out: Path) -> None:
    """Create ``out`` if needed; a UserInputError if it is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} exists and is not a directory; give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create output directory {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserInputError(f"output directory {out} is not writable")


_SPEC_RE = re.compile(r"^(?P<arch>[a-z0-9_]+)-(?P<preset>[a-z]+)(?:@(?P<seed>\d+))?$")


def parse_builtin(spec: str) -> BuiltinSpec:
    """Parse ``builtin:ARCH-PRESET[@SEED]`` (e.g. ``builtin:llama-tiny``, ``builtin:gpt2-small@3``)."""
    name = spec.removeprefix(BUILTIN_PREFIX)
    match = _SPEC_RE.match(name)
    if match is None:
        raise UserInputError(
            f"bad built-in model {spec!r}; expected builtin:ARCH-PRESET[@SEED], e.g. builtin:llama-tiny"
        )
    return BuiltinSpec(match["arch"], match["preset"], int(match["seed"] or 0))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgesplit/models``, else ``~/.cache/edgesplit/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgesplit" / "models"


def resolve_model(spec: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """Turn a model spec into a checkpoint directory.

    ``spec`` is a directory holding an HF checkpoint, or ``builtin:ARCH-PRESET[@SEED]``. A built-in
    is materialised once into ``cache_dir`` (default :func:`default_cache_dir`) and reused; builds
    go to a temporary directory renamed into place under a file lock, so concurrent processes build
    it once and never see half a model.
    Raises ``ModelLoadError`` for a directory that is missing or holds no ``config.json``.
    """
    text = os.fspath(spec)
    if text.startswith(BUILTIN_PREFIX):
        return _materialise(parse_builtin(text), cache_dir or default_cache_dir())
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"model directory {path} does not exist; pass a checkpoint folder or builtin:ARCH-PRESET "
            f"(e.g. builtin:llama-tiny)"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} holds no config.json; is it a Hugging Face checkpoint folder?")
    return path


def _materialise(spec: BuiltinSpec, cache_dir: Path) -> Path:
    """Build ``spec`` into the cache once: a file lock makes concurrent callers wait for one build."""
    import fcntl

    final = cache_dir / spec.cache_name
    if (final / "config.json").is_file():
        return final
    ensure_writable_dir(cache_dir)
    with open(cache_dir / f".{spec.cache_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (final / "config.json").is_file():  # another process built it while we waited
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.cache_name}-", dir=cache_dir))
        try:
            init_model(staging, spec.arch, spec.preset, spec.seed)
            staging.rename(final)  # atomic: readers never see half a model
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve_builtin(name: str, cache_dir: Path | None = None) -> Path:
    """``resolve_model`` for a built-in given without its prefix (``llama-tiny``, ``gpt2-small@3``)."""
    return _materialise(parse_builtin(name), cache_dir or default_cache_dir())
