"""Factories for tiny random-weight checkpoints of each family, with an offline tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "edge nodes run a model split into segments",
    "a cloud node and a device share the layers of the model",
    "hello world this is a tiny tokenizer for tests",
]
VOCAB_SIZE = 96
FAMILIES = ("llama", "qwen2", "mistral", "gpt2")


def make_tokenizer(out_dir: Path) -> Any:
    """A word-level tokenizer that prepends <s> (so `tokenizer(text)` adds a special token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "<s>", "</s>"])
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="[UNK]", pad_token="[PAD]"
    )
    assert len(fast) <= VOCAB_SIZE
    fast.save_pretrained(out_dir)
    return fast


def make_config(family: str, n_layers: int = 3, hidden: int = 64) -> Any:
    """A tiny config of ``family``; mistral and qwen2 get a 16-token sliding window to exercise masks."""
    import transformers as tf

    common: dict[str, Any] = {
        "vocab_size": VOCAB_SIZE,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "pad_token_id": 0,
    }
    if family == "gpt2":
        return tf.GPT2Config(n_embd=hidden, n_layer=n_layers, n_head=4, n_positions=256, **common)
    rotary: dict[str, Any] = {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "initializer_range": 0.1,
    }
    if family == "gpt_neox":  # no family adapter: exercises the generic one (layers at gpt_neox.layers)
        return tf.GPTNeoXConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            max_position_embeddings=256,
            initializer_range=0.1,
            **common,
        )
    if family == "llama":
        return tf.LlamaConfig(tie_word_embeddings=False, **rotary, **common)
    if family == "mistral":
        return tf.MistralConfig(sliding_window=16, tie_word_embeddings=False, **rotary, **common)
    if family == "qwen2":
        return tf.Qwen2Config(
            use_sliding_window=True,
            sliding_window=16,
            max_window_layers=1,
            tie_word_embeddings=True,
            **rotary,
            **common,
        )
    raise ValueError(family)


def make_checkpoint(out_dir: Path, family: str, n_layers: int = 3, hidden: int = 64, seed: int = 0) -> Path:
    """Save a random-weight ``family`` model plus tokenizer to ``out_dir``; return it."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(family, n_layers, hidden))
    if family == "gpt2":  # GPT-2 init is tiny; widen it so greedy choices are not near-ties
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.1) if p.dim() > 1 else None
    model.save_pretrained(out_dir)
    make_tokenizer(out_dir)
    return out_dir
