"""API limits in front of the gateway: request body size (413), per-client rate (429 + Retry-After),
and a deadline on reading the body (408). A pure ASGI middleware, so nothing oversized is buffered.

The rate limiter is a token bucket per client: its API key when it presents a configured one, else its
address (so made-up keys do not buy fresh buckets). Only the inference endpoints are rate limited;
admin and monitoring calls (the orchestrator's) never are.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from edgesplit.gateway.auth import bearer_token
from edgesplit.gateway.config import GatewayConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RATE_LIMITED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per client key: ``rate_per_s`` refill, ``burst`` capacity. Pure: the caller gives
    the clock, so tests need no sleeps."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_clients = max_clients

    def acquire(self, key: str, now: float) -> float:
        """Take one request from ``key``'s bucket: 0.0 if allowed, else seconds until one is available."""
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s


def error_body(message: str, type_: str, code: str, param: str | None = None) -> bytes:
    """An OpenAI-shaped error object, serialised."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


class RequestLimits:
    """ASGI middleware enforcing ``config.max_body_bytes``, ``config.rate_limit_rps`` and
    ``config.body_timeout_s`` before the app sees a request."""

    def __init__(
        self, app: ASGIApp, config: GatewayConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.max_body_bytes = config.max_body_bytes
        self.body_timeout_s = config.body_timeout_s
        self.api_keys = frozenset(config.api_keys)
        self.clock = clock
        self.limiter = (
            RateLimiter(config.rate_limit_rps, config.rate_limit_burst) if config.rate_limit_rps else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 1) Rate: one bucket per client, inference endpoints only.
        if self.limiter is not None and scope["path"] in RATE_LIMITED_PATHS:
            wait_s = self.limiter.acquire(self._client_key(scope), self.clock())
            if wait_s > 0:
                await _reply(
                    send,
                    429,
                    error_body(
                        f"rate limit of {self.limiter.rate_per_s:g} requests/s "
                        f"(burst {self.limiter.burst}) exceeded; retry after {wait_s:.2f} s",
                        "requests",
                        "rate_limit_exceeded",
                    ),
                    {"retry-after": str(max(1, math.ceil(wait_s)))},
                )
                return
        # 2) Size: refuse a declared oversize at once, else read at most the limit (within a deadline).
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send, declared)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        await self._too_large(send, size)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _reply(
                send,
                408,
                error_body(
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    "invalid_request_error",
                    "request_timeout",
                ),
            )
            return
        # 3) Hand the app the body we read, then the real channel (disconnects during streaming).
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _client_key(self, scope: Scope) -> str:
        token = bearer_token(scope)
        if token in self.api_keys:
            return f"key:{token}"
        client = scope.get("client")
        return f"addr:{client[0] if client else '?'}"

    async def _too_large(self, send: Send, size: int) -> None:
        await _reply(
            send,
            413,
            error_body(
                f"the request body has {size} bytes or more, over the gateway's limit of "
                f"{self.max_body_bytes} bytes; send a shorter prompt",
                "invalid_request_error",
                "request_too_large",
            ),
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
