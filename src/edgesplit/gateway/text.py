"""Text ↔ token ids for the gateway: the checkpoint's own tokenizer, chat prompts, streamed detokenising.

Owns prompt encoding exactly as ``tokenizer(prompt)`` does and incremental, stop-aware decoding;
knows nothing about HTTP or the chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesplit.errors import ModelLoadError

#: Used when the checkpoint's tokenizer has no chat template: one ``role: content`` line per message,
#: then ``assistant:`` for the model to continue. Documented in docs/running.md.
FALLBACK_CHAT_TEMPLATE = "{role}: {content}\n"
FALLBACK_GENERATION_PROMPT = "assistant:"

#: A decoded text ending in this is an incomplete UTF-8 sequence: hold it back until it completes.
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class ChatTurn:
    """One message of a chat prompt, content already flattened to text."""

    role: str
    content: str


class TextCodec:
    """The checkpoint's tokenizer plus the two numbers the gateway enforces: context and EOS ids."""

    def __init__(
        self,
        tokenizer: Any,
        context_tokens: int,
        eos_token_ids: frozenset[int],
        num_blocks: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.eos_token_ids = eos_token_ids
        self.num_blocks = num_blocks
        """Embedding + layers + head (DESIGN §4.1), to check that a committed plan covers the model."""

    @classmethod
    def from_checkpoint(cls, path: Path) -> TextCodec:
        """Load the tokenizer, the context length and the EOS ids from a HF checkpoint folder."""
        from transformers import AutoConfig, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            config = AutoConfig.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load tokenizer/config from {path}: {exc}") from exc
        context = _context_tokens(config)
        eos = _eos_ids(path, config, tokenizer)
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
        return cls(tokenizer, context, eos, int(layers) + 2 if layers else None)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode_prompt(self, text: str) -> list[int]:
        """Exactly ``tokenizer(text)["input_ids"]``: special tokens added as the checkpoint defines."""
        return [int(i) for i in self.tokenizer(text)["input_ids"]]

    def encode_chat(self, turns: list[ChatTurn]) -> list[int]:
        """The tokenizer's chat template with a generation prompt, or the documented fallback."""
        messages = [{"role": t.role, "content": t.content} for t in turns]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            # The template renders any BOS itself; adding special tokens again would double it.
            return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        text = "".join(FALLBACK_CHAT_TEMPLATE.format(role=t.role, content=t.content) for t in turns)
        return self.encode_prompt(text + FALLBACK_GENERATION_PROMPT)

    def decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))


class TextStream:
    """Turns generated ids into text deltas; finds stop strings, holding back text that could start one.

    The concatenation of every delta plus ``finish()`` equals the decoding of all pushed ids, cut
    before the first stop string.
    """

    def __init__(self, codec: TextCodec, stop: tuple[str, ...] = ()) -> None:
        self._codec = codec
        self._stop = tuple(s for s in stop if s)
        self._holdback = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._emitted = 0
        self.text = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text now safe to show (maybe empty). Sets ``stopped`` on a stop hit."""
        self._ids.append(token_id)
        self.text = self._codec.decode(self._ids)
        if self._cut_at_stop():
            return self._flush()
        if self.text.endswith(_REPLACEMENT):
            return ""
        safe_end = max(self._emitted, len(self.text) - self._holdback)
        delta = self.text[self._emitted : safe_end]
        self._emitted = safe_end
        return delta

    def finish(self) -> str:
        """The text still held back, once generation has ended."""
        return self._flush()

    def _cut_at_stop(self) -> bool:
        if not self._stop:
            return False
        start = max(0, self._emitted - self._holdback)
        hits = [i for s in self._stop if (i := self.text.find(s, start)) >= 0]
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        self.stopped = True
        return True

    def _flush(self) -> str:
        delta = self.text[self._emitted :]
        self._emitted = len(self.text)
        return delta


def _context_tokens(config: Any) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _eos_ids(path: Path, config: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids from generation_config.json, else the model config, else the tokenizer."""
    candidates: list[Any] = []
    gen_file = path / "generation_config.json"
    if gen_file.is_file():
        candidates.append(json.loads(gen_file.read_text()).get("eos_token_id"))
    candidates.append(getattr(config, "eos_token_id", None))
    candidates.append(getattr(tokenizer, "eos_token_id", None))
    for value in candidates:
        if isinstance(value, int):
            return frozenset({value})
        if isinstance(value, list) and value:
            return frozenset(int(v) for v in value)
    return frozenset()
