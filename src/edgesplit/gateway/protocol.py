"""OpenAI request bodies the gateway accepts, and the response/chunk shapes it returns.

Owns field validation (bounds, unsupported options) and JSON shapes; knows nothing about the chain.
Unknown extra fields are ignored, as vLLM does, so newer clients keep working.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgesplit.errors import UnsupportedOptionError


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    """Sampling temperature; 0 is greedy. OpenAI's default when absent is 1.0."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    user: str | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    privacy: Literal["high", "none"] = "high"
    """edgesplit extension (the paper's per-request tag): "high" keeps privacy blocks on trusted nodes."""

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def check_supported(self) -> None:
        """Reject options that would change the answer but are not implemented."""
        if self.n != 1:
            raise UnsupportedOptionError("only n=1 is supported", "n")
        if self.presence_penalty or self.frequency_penalty:
            raise UnsupportedOptionError("presence/frequency penalties are not supported", "presence_penalty")
        if self.logit_bias:
            raise UnsupportedOptionError("logit_bias is not supported", "logit_bias")

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs is not None:
            raise UnsupportedOptionError("logprobs are not supported: the last node returns ids", "logprobs")
        if self.best_of not in (None, 1):
            raise UnsupportedOptionError("best_of is not supported", "best_of")
        if self.suffix:
            raise UnsupportedOptionError("suffix is not supported", "suffix")

    def single_prompt(self) -> str | list[int]:
        """The one prompt of this request (a string or token ids); batches of prompts are rejected."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if not prompt:
            raise UnsupportedOptionError("prompt must not be empty", "prompt")
        if all(isinstance(p, int) for p in prompt):
            return [int(p) for p in prompt]  # type: ignore[arg-type]
        if len(prompt) != 1:
            raise UnsupportedOptionError("only one prompt per request is supported", "prompt")
        only = prompt[0]
        return only if isinstance(only, str) else [int(p) for p in only]  # type: ignore[union-attr]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text":
                raise UnsupportedOptionError(
                    f"content parts of type {part.type!r} are not supported", "messages"
                )
            parts.append(part.text or "")
        return "".join(parts)


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs:
            raise UnsupportedOptionError("logprobs are not supported: the last node returns ids", "logprobs")
        if self.tools:
            raise UnsupportedOptionError("tools are not supported", "tools")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise UnsupportedOptionError("only response_format type 'text' is supported", "response_format")

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def now_s() -> int:
    return int(time.time())


def completion_body(
    rid: str, model: str, text: str, finish: str | None, use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": now_s(),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": use,
    }


def completion_chunk(rid: str, model: str, text: str, finish: str | None, with_usage: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": now_s(),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        chunk["usage"] = None
    return chunk


def chat_body(rid: str, model: str, text: str, finish: str | None, use: dict[str, int]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": now_s(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": use,
    }


def chat_chunk(
    rid: str, model: str, delta: dict[str, str], finish: str | None, with_usage: bool
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": now_s(),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk(rid: str, model: str, obj: str, use: dict[str, int]) -> dict[str, Any]:
    """The extra chunk before [DONE] when ``stream_options.include_usage``: empty choices, filled usage."""
    return {"id": rid, "object": obj, "created": now_s(), "model": model, "choices": [], "usage": use}
