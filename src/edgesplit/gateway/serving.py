"""Serving one OpenAI request end to end: parse, validate limits, decode, shape (JSON or SSE).

Owns the per-request flow and its metrics; errors before the first token become HTTP statuses,
errors after it become a ``data: {"error": …}`` event followed by ``[DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask

from edgesplit.errors import CapacityError, UnsupportedOptionError
from edgesplit.gateway.config import GatewayConfig
from edgesplit.gateway.decoder import Decoder, GenerationRequest, GenerationState
from edgesplit.gateway.error_map import ApiError, bad_request, to_api_error
from edgesplit.gateway.metrics import GatewayMetrics
from edgesplit.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_body,
    chat_chunk,
    completion_body,
    completion_chunk,
    usage,
    usage_chunk,
)
from edgesplit.gateway.text import ChatTurn, TextCodec, TextStream
from edgesplit.model.steps import SamplingParams

_DONE = "data: [DONE]\n\n"


class GatewayService:
    """The request flow shared by /v1/completions and /v1/chat/completions."""

    def __init__(
        self, config: GatewayConfig, codec: TextCodec, decoder: Decoder, metrics: GatewayMetrics
    ) -> None:
        self.config = config
        self.codec = codec
        self.decoder = decoder
        self.metrics = metrics
        self.running = 0
        self.max_prompt_tokens = min(config.max_prompt_tokens or codec.context_tokens, codec.context_tokens)

    async def completion(self, raw: bytes) -> Response:
        req = _parse(raw, CompletionRequest)
        self._check_model(req.model)
        _check_supported(req)
        prompt = req.single_prompt()
        prompt_ids = self.codec.encode_prompt(prompt) if isinstance(prompt, str) else prompt
        self._check_prompt(prompt_ids, "prompt")
        max_tokens = self._check_max_tokens(req.max_tokens or 16, len(prompt_ids))
        echo = "" if not req.echo else prompt if isinstance(prompt, str) else self.codec.decode(prompt_ids)
        return await self._serve(req, prompt_ids, max_tokens, "completion", echo)

    async def chat(self, raw: bytes) -> Response:
        req = _parse(raw, ChatCompletionRequest)
        self._check_model(req.model)
        _check_supported(req)
        try:
            turns = [ChatTurn(m.role, m.text()) for m in req.messages]
        except UnsupportedOptionError as exc:
            raise bad_request(str(exc), exc.param, "unsupported_option") from exc
        prompt_ids = self.codec.encode_chat(turns)
        self._check_prompt(prompt_ids, "messages")
        asked = req.requested_max_tokens()
        room = self.codec.context_tokens - len(prompt_ids)
        max_tokens = self._check_max_tokens(
            asked if asked is not None else max(1, min(self.config.max_output_tokens, room)), len(prompt_ids)
        )
        return await self._serve(req, prompt_ids, max_tokens, "chat", "")

    # -- checks ---------------------------------------------------------------------------------

    def _check_model(self, model: str) -> None:
        if model != self.config.model_name:
            raise ApiError(
                404,
                f"The model `{model}` does not exist; this gateway serves `{self.config.model_name}`.",
                "invalid_request_error",
                "model",
                "model_not_found",
            )

    def _check_prompt(self, prompt_ids: list[int], param: str) -> None:
        if not prompt_ids:
            raise bad_request("the prompt encodes to zero tokens", param)
        bad = [t for t in prompt_ids if not 0 <= t < self.codec.vocab_size]
        if bad:
            raise bad_request(
                f"token id {bad[0]} is outside the vocabulary (0..{self.codec.vocab_size - 1})", param
            )
        if len(prompt_ids) > self.max_prompt_tokens:
            raise bad_request(
                f"the prompt has {len(prompt_ids)} tokens but at most {self.max_prompt_tokens} are allowed; "
                "shorten it",
                param,
                "context_length_exceeded",
            )

    def _check_max_tokens(self, max_tokens: int, prompt_tokens: int) -> int:
        if max_tokens > self.config.max_output_tokens:
            raise bad_request(
                f"max_tokens is {max_tokens} but at most {self.config.max_output_tokens} are allowed",
                "max_tokens",
            )
        if prompt_tokens + max_tokens > self.codec.context_tokens:
            raise bad_request(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the model's "
                f"context of {self.codec.context_tokens} tokens; lower max_tokens",
                "max_tokens",
                "context_length_exceeded",
            )
        return max_tokens

    # -- the flow -------------------------------------------------------------------------------

    async def _serve(
        self,
        req: CompletionRequest | ChatCompletionRequest,
        prompt_ids: list[int],
        max_tokens: int,
        kind: str,
        echo: str,
    ) -> Response:
        if self.running >= self.config.max_concurrent_requests:
            raise CapacityError(
                f"{self.running} requests are running, the limit is {self.config.max_concurrent_requests}; "
                "retry shortly"
            )
        self.running += 1
        self.metrics.requests_running.inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.running -= 1
                self.metrics.requests_running.dec()

        try:
            run = _Run(self, req, prompt_ids, max_tokens, kind)
            await run.start()
        except BaseException:
            release()
            raise
        if not req.stream:
            try:
                text = echo + "".join([piece async for piece in run.pieces()])
            finally:
                release()
            build = completion_body if kind == "completion" else chat_body
            body = build(run.rid, req.model, text, run.finish_reason, run.usage())
            return JSONResponse({**body, "edgesplit": run.report()})

        async def cleanup() -> None:
            # Runs after the response even when the client left before the stream began (an
            # async generator that never started skips its own ``finally``).
            await run.tokens.aclose()
            release()

        return StreamingResponse(
            _sse(run, req, echo, release),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(cleanup),
        )


class _Run:
    """One request's generation: the decoder's token stream turned into text pieces, with metrics."""

    def __init__(
        self,
        service: GatewayService,
        req: CompletionRequest | ChatCompletionRequest,
        prompt_ids: list[int],
        max_tokens: int,
        kind: str,
    ) -> None:
        self.service = service
        self.kind = kind
        self.rid = ("cmpl-" if kind == "completion" else "chatcmpl-") + uuid.uuid4().hex
        self.prompt_tokens = len(prompt_ids)
        self.state = GenerationState()
        temperature = 1.0 if req.temperature is None else req.temperature
        self.request = GenerationRequest(
            prompt_ids=tuple(prompt_ids),
            max_tokens=max_tokens,
            sampling=SamplingParams(temperature, 1.0 if req.top_p is None else req.top_p, req.seed),
            privacy_high=req.privacy == "high",
        )
        self.text = TextStream(service.codec, req.stop_strings())
        self.tokens = service.decoder.generate(self.request, self.state)
        self.first: int | None = None
        self.started = time.monotonic()
        self.finish_reason: str | None = None

    async def start(self) -> None:
        """Run the prefill before answering, so its errors still get a proper HTTP status."""
        try:
            self.first = await anext(self.tokens)
        except StopAsyncIteration:
            self.first = None
        except BaseException:
            await self.tokens.aclose()
            raise
        self.service.metrics.prompt_tokens.inc(self.prompt_tokens)
        if self.state.first_token_s is not None:
            self.service.metrics.ttft_seconds.observe(self.state.first_token_s)

    async def pieces(self) -> AsyncGenerator[str, None]:
        """Text deltas until EOS, max_tokens or a stop string; then ``finish_reason`` is set."""
        metrics = self.service.metrics
        last = time.monotonic()
        async with aclosing(self.tokens) as tokens:
            if self.first is not None:
                piece = self.text.push(self.first)
                if piece:
                    yield piece
                if not self.text.stopped:
                    async for token in tokens:
                        now = time.monotonic()
                        metrics.itl_seconds.observe(now - last)
                        last = now
                        piece = self.text.push(token)
                        if piece:
                            yield piece
                        if self.text.stopped:
                            break
        tail = self.text.finish()
        if tail:
            yield tail
        self.finish_reason = "stop" if self.text.stopped else self.state.finish_reason or "stop"
        metrics.generation_tokens.inc(self.state.completion_tokens)
        metrics.request_success.labels(self.finish_reason).inc()
        metrics.e2e_seconds.observe(time.monotonic() - self.started)
        metrics.reprefills.inc(self.state.reprefills)
        if self.report()["privacy_violation"]:
            metrics.privacy_violations.inc()
        for timing in self.state.timings:
            metrics.hop_compute_seconds.labels(timing.node_id).observe(timing.compute_s)

    def usage(self) -> dict[str, int]:
        return usage(self.prompt_tokens, self.state.completion_tokens)

    def report(self) -> dict[str, Any]:
        """edgesplit's extension of a response: where the request ran (for evaluation and audits)."""
        routes = self.state.routes
        leaked = sorted({n for r in routes.values() for n in self.service.decoder.untrusted_privacy_hops(r)})
        return {
            "epochs": sorted(routes),
            "nodes": sorted({h.node_id for r in routes.values() for h in r.hops}),
            "chains": {
                str(epoch): [{"node": h.node_id, "start": h.start, "end": h.end} for h in route.hops]
                for epoch, route in sorted(routes.items())
            },
            "reprefills": self.state.reprefills,
            "privacy": "high" if self.request.privacy_high else "none",
            "privacy_violation": bool(self.request.privacy_high and leaked),
        }


async def _sse(
    run: _Run, req: CompletionRequest | ChatCompletionRequest, echo: str, release: Any
) -> AsyncIterator[str]:
    """``data: <json>`` events in OpenAI's framing, always ending in ``data: [DONE]``."""
    with_usage = req.include_usage()
    model = req.model
    try:
        if run.kind == "chat":
            yield _event(chat_chunk(run.rid, model, {"role": "assistant", "content": ""}, None, with_usage))
        elif echo:
            yield _event(completion_chunk(run.rid, model, echo, None, with_usage))
        async with aclosing(run.pieces()) as pieces:
            async for piece in pieces:
                if run.kind == "chat":
                    yield _event(chat_chunk(run.rid, model, {"content": piece}, None, with_usage))
                else:
                    yield _event(completion_chunk(run.rid, model, piece, None, with_usage))
        if run.kind == "chat":
            last = chat_chunk(run.rid, model, {}, run.finish_reason, with_usage)
        else:
            last = completion_chunk(run.rid, model, "", run.finish_reason, with_usage)
        yield _event({**last, "edgesplit": run.report()})
        if with_usage:
            obj = "chat.completion.chunk" if run.kind == "chat" else "text_completion"
            yield _event(usage_chunk(run.rid, model, obj, run.usage()))
    except Exception as exc:  # after the 200 the error must travel in the stream
        error = to_api_error(exc)
        run.service.metrics.request_errors.labels(str(error.status)).inc()
        yield _event(error.body())
    finally:
        await run.tokens.aclose()  # a client gone before the first piece still ends its session
        release()
    yield _DONE


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


M = TypeVar("M", bound=BaseModel)


def _parse(raw: bytes, model: type[M]) -> M:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", None, "invalid_json") from exc
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", None, "invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        param = str(first["loc"][0]) if first["loc"] else None
        raise bad_request(f"{where}: {first['msg']}" if where else first["msg"], param) from exc


def _check_supported(req: CompletionRequest | ChatCompletionRequest) -> None:
    try:
        req.check_supported()
    except UnsupportedOptionError as exc:
        raise bad_request(str(exc), exc.param, "unsupported_option") from exc
