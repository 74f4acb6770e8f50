"""Offline, deterministic byte-level BPE tokenizers for the built-in models.

Owns the training corpus (shipped English text plus deterministic pseudo-words) and each family's
special tokens; never touches the network and knows nothing of model weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# A little real English so common words become single tokens; the pseudo-words below give the BPE
# trainer enough distinct pairs to reach any vocabulary size up to a few tens of thousands.
_ENGLISH = """\
The quick brown fox jumps over the lazy dog. Hello, world! How are you today?
A large language model is split into blocks: an embedding, many transformer layers and a head.
Each node at the edge runs a contiguous segment of blocks and forwards its activations to the next.
When the bandwidth between two machines drops, the orchestrator moves the cut to a better place.
Privacy-critical layers stay on trusted devices; the rest may run on a server in the cloud.
The user's phone, a small computer in the street cabinet and a data centre work together.
Latency, throughput and memory are measured on every machine, not guessed from a table.
Once upon a time there was a little town by the sea where the people liked to tell stories.
In the morning the market opens, the baker sells bread and the children walk to school.
Numbers such as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100, 2024 and 3.14159 appear in text.
Questions end with a question mark? Exclamations end with a mark! Lists use commas, and colons: yes.
def main(): print("hello") # code is text too; x = [1, 2, 3]; y = {"key": "value"}
"""

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_CORPUS_SEED = 20261123


@dataclass(frozen=True)
class TokenizerSpec:
    """A family's special tokens and whether ``tokenizer(text)`` starts with BOS, as the real ones do."""

    special_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    unk_token: str | None
    pad_token: str | None
    add_bos: bool
    chat_template: str


_GENERIC_CHAT = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Llama-2 and Mistral (SentencePiece) prepend <s>; Qwen2 and GPT-2 add nothing.
FAMILY_TOKENIZERS: dict[str, TokenizerSpec] = {
    "llama": TokenizerSpec(("<unk>", "<s>", "</s>"), "<s>", "</s>", "<unk>", None, True, _GENERIC_CHAT),
    "mistral": TokenizerSpec(("<unk>", "<s>", "</s>"), "<s>", "</s>", "<unk>", None, True, _GENERIC_CHAT),
    "qwen2": TokenizerSpec(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        None,
        "<|endoftext|>",
        None,
        "<|endoftext|>",
        False,
        _CHATML,
    ),
    "gpt2": TokenizerSpec(
        ("<|endoftext|>",), "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", None, False, _GENERIC_CHAT
    ),
}


def training_corpus(n_words: int) -> list[str]:
    """Deterministic corpus lines: the English text repeated, then Zipf-distributed pseudo-words."""
    rng = random.Random(_CORPUS_SEED)
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    syllables += [c + v + e for c in _CONSONANTS for v in _VOWELS for e in "nrst"]
    lexicon = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20_000)]
    english = _ENGLISH.splitlines()
    # About a third of the words are English, so its common words and stems win early merges.
    lines = english * max(1, n_words // (2 * len(_ENGLISH.split())))
    for _ in range(n_words // 10):
        words = []
        for _ in range(10):
            # Half the words Zipf-like (frequent stems become tokens), half uniform (long tail).
            rank = int(rng.paretovariate(1.0)) - 1 if rng.random() < 0.5 else rng.randrange(len(lexicon))
            words.append(lexicon[min(rank, len(lexicon) - 1)])
        sentence = " ".join(words)
        lines.append(sentence[0].upper() + sentence[1:] + rng.choice(".,;!?"))
    return lines


def build_tokenizer(arch: str, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with exactly ``vocab_size`` entries (specials included) for ``arch``.

    Byte-level pre-tokenisation makes every string encodable and ``decode(encode(text))`` exact.
    The result depends only on (arch, vocab_size): the corpus and the trainer are deterministic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILY_TOKENIZERS[arch]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(max(20_000, 12 * vocab_size)), trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise RuntimeError(f"BPE reached {tokenizer.get_vocab_size()} tokens, wanted {vocab_size}")
    if spec.add_bos:
        assert spec.bos_token is not None
        bos = (spec.bos_token, tokenizer.token_to_id(spec.bos_token))
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec.bos_token,
        eos_token=spec.eos_token,
        unk_token=spec.unk_token,
        pad_token=spec.pad_token,
        model_max_length=model_max_length,
        chat_template=spec.chat_template,
    )


def special_token_ids(arch: str, tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    """The bos/eos/pad ids a model config of ``arch`` should carry for this tokenizer."""
    spec = FAMILY_TOKENIZERS[arch]

    def token_id(token: str | None) -> int | None:
        return None if token is None else int(tokenizer.get_vocab()[token])

    return {
        "bos_token_id": token_id(spec.bos_token),
        "eos_token_id": token_id(spec.eos_token),
        "pad_token_id": token_id(spec.pad_token),
    }
