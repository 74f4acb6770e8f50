"""Built-in models: deterministic bytes, loadable by transformers, working tokenizers, resolve_model."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesplit.errors import ModelLoadError, UnsupportedArchitectureError, UserInputError
from edgesplit.model import builtin
from edgesplit.model.builtin import ARCHS, default_cache_dir, init_model, parse_builtin, resolve_model

HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path, tiny_models) -> None:
    again = init_model(tmp_path / "again", "llama", "tiny", seed=0)
    other = init_model(tmp_path / "other", "llama", "tiny", seed=1)
    first = tiny_models["llama"]
    assert sha256(again / "model.safetensors") == sha256(first / "model.safetensors")
    assert sha256(again / "tokenizer.json") == sha256(first / "tokenizer.json")
    assert sha256(other / "model.safetensors") != sha256(first / "model.safetensors")
    # The tokenizer is part of the architecture, not of the weight seed.
    assert sha256(other / "tokenizer.json") == sha256(first / "tokenizer.json")


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_with_auto_classes_and_sizes_agree(arch: str, tiny_models) -> None:
    model, tokenizer = load(tiny_models[arch])
    assert type(model).__name__ == HF_CLASSES[arch]
    assert model.config.model_type == arch
    assert len(tokenizer) == model.config.vocab_size == 512
    assert model.config.num_hidden_layers == 4 and model.config.hidden_size == 64
    assert model.config.eos_token_id == tokenizer.eos_token_id is not None


def test_llama_tiny_parameter_count_matches_hand_count(tiny_models) -> None:
    model, _ = load(tiny_models["llama"])
    # embed 512·64; per layer q,k,v,o 4·64·64 + SwiGLU 3·64·176 + 2 norms 2·64; final norm 64; lm_head 512·64.
    per_layer = 4 * 64 * 64 + 3 * 64 * 176 + 2 * 64
    assert sum(p.numel() for p in model.parameters()) == 512 * 64 + 4 * per_layer + 64 + 512 * 64


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_tied_families_share_embedding_and_head(arch: str, tiny_models) -> None:
    model, _ = load(tiny_models[arch])
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize(
    ("arch", "adds_bos"), [("llama", True), ("mistral", True), ("qwen2", False), ("gpt2", False)]
)
def test_bos_is_added_the_way_the_real_tokenizers_do(arch: str, adds_bos: bool, tiny_models) -> None:
    _, tokenizer = load(tiny_models[arch])
    text = "Hello world"
    ids = tokenizer(text)["input_ids"]
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos:
        assert ids == [tokenizer.bos_token_id, *plain]
    else:
        assert ids == plain


_SPECIALS = ("<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80).filter(lambda t: not any(s in t for s in _SPECIALS)))
def test_any_text_round_trips_through_every_tokenizer(text: str, tiny_models) -> None:
    from transformers import AutoTokenizer

    for arch in ARCHS:
        tokenizer = _cached_tokenizer(tiny_models[arch], AutoTokenizer)
        ids = tokenizer(text)["input_ids"]
        # Byte-level BPE loses nothing but what the tokenizer's own normaliser changes (transformers 5
        # gives Qwen2's tokenizer its NFC normaliser: U+F900 comes back as U+8C48).
        normalizer = tokenizer.backend_tokenizer.normalizer
        expected = normalizer.normalize_str(text) if normalizer is not None else text
        assert tokenizer.decode(ids, skip_special_tokens=True) == expected


_TOKENIZERS: dict[Path, object] = {}


def _cached_tokenizer(path: Path, auto: type):  # type: ignore[no-untyped-def]
    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = auto.from_pretrained(path)
    return _TOKENIZERS[path]


def test_english_words_are_single_tokens() -> None:
    """The shipped English text makes common words whole tokens even in the tiny vocabulary."""
    from edgesplit.model.tokenizer_build import build_tokenizer

    tokenizer = build_tokenizer("gpt2", 512, 512)
    assert len(tokenizer(" the")["input_ids"]) == 1
    sentence = "The quick brown fox jumps over the lazy dog."
    assert len(tokenizer(sentence)["input_ids"]) < 0.6 * len(sentence.encode())


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_forward_is_fast_and_generation_not_degenerate(arch: str, tiny_models) -> None:
    model, tokenizer = load(tiny_models[arch])
    ids = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt")
    with torch.no_grad():
        model(**ids)  # warm-up
        best_s = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            logits = model(**ids).logits
            best_s = min(best_s, time.perf_counter() - start)
    assert best_s < 0.25, f"tiny forward took {best_s:.3f} s"
    assert torch.isfinite(logits).all()
    assert logits[0, -1].std() > 0.3  # logits spread well beyond float noise: greedy is stable
    generated = model.generate(**ids, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
    new_tokens = generated[0, ids["input_ids"].shape[1] :].tolist()
    assert len(set(new_tokens)) >= 6, new_tokens  # a random model that loops on one token would fail


def test_presets_and_archs_are_validated(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="unknown architecture 'bert'"):
        init_model(tmp_path / "m", "bert", "tiny")
    with pytest.raises(UserInputError, match="unknown preset 'huge'"):
        init_model(tmp_path / "m", "llama", "huge")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a directory"):
        init_model(tmp_path / "file", "llama", "tiny")


def test_parse_builtin_accepts_prefix_and_seed() -> None:
    assert parse_builtin("builtin:llama-tiny") == builtin.BuiltinSpec("llama", "tiny", 0)
    assert parse_builtin("gpt2-small@7") == builtin.BuiltinSpec("gpt2", "small", 7)
    with pytest.raises(UserInputError, match="builtin:ARCH-PRESET"):
        parse_builtin("builtin:llama")
    with pytest.raises(UnsupportedArchitectureError):
        parse_builtin("builtin:bloom-tiny")


def test_resolve_model_builds_once_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    path = resolve_model("builtin:gpt2-tiny@3", cache_dir=cache)
    assert path.parent == cache and (path / "config.json").is_file()
    assert sha256(path / "model.safetensors") == sha256(
        init_model(tmp_path / "direct", "gpt2", "tiny", seed=3) / "model.safetensors"
    )

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(builtin, "init_model", no_rebuild)
    assert resolve_model("builtin:gpt2-tiny@3", cache_dir=cache) == path
    assert builtin.resolve_builtin("gpt2-tiny@3", cache_dir=cache) == path
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [path.name]  # no staging left


def test_concurrent_resolves_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    builds: list[Path] = []
    real_init = builtin.init_model

    def counting_init(out: Path, *args: object, **kwargs: object) -> Path:
        builds.append(out)
        return real_init(out, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtin, "init_model", counting_init)
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: resolve_model("builtin:qwen2-tiny", cache_dir=tmp_path), range(3)))
    assert len(set(paths)) == 1 and (paths[0] / "model.safetensors").is_file()
    assert len(builds) == 1


def test_resolve_model_passes_folders_through_and_names_bad_ones(tmp_path: Path, tiny_models) -> None:
    assert resolve_model(str(tiny_models["qwen2"])) == tiny_models["qwen2"]
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve_model(str(tmp_path / "empty"))


def test_default_cache_honours_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "edgesplit" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "edgesplit" / "models"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_small_preset_has_tens_of_millions_of_parameters(arch: str, tmp_path: Path) -> None:
    model, tokenizer = load(init_model(tmp_path / arch, arch, "small"))
    params = sum(p.numel() for p in model.parameters())
    assert 15e6 <= params <= 60e6, params
    assert len(tokenizer) == model.config.vocab_size == 8192


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_base_preset_has_a_few_hundred_million_parameters(arch: str, tmp_path: Path) -> None:
    model, tokenizer = load(init_model(tmp_path / arch, arch, "base"))
    params = sum(p.numel() for p in model.parameters())
    assert 200e6 <= params <= 400e6, params
    assert len(tokenizer) == model.config.vocab_size == 32000
    ids = tokenizer("Hello world", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()
