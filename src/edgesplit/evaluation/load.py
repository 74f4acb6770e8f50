"""The open-loop load generator: every planned request is sent at its scheduled time, whatever the
latency of the others, and its latency is measured from that scheduled time (no coordinated omission).

Streams completions from a running gateway over HTTP and records what happened to each request,
including where the gateway says it ran. Knows nothing of modes, clusters or emulation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from edgesplit.evaluation.workload import PlannedRequest

Status = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request; times are seconds after the load started (one monotonic clock)."""

    index: int
    privacy: str
    send_s: float
    """The scheduled send time: latencies are measured from here, so client lag counts against us."""
    first_token_s: float | None
    end_s: float
    """When the stream finished, failed or timed out."""
    tokens: int
    status: Status
    error: str | None
    epochs: tuple[int, ...]
    """The plan epochs the request's steps ran on, as the gateway reported them."""
    nodes_by_block: dict[int, tuple[str, ...]] | None
    """Block index → the nodes that ran it for this request (None: the gateway did not say)."""
    sent_late_s: float = 0.0
    """How much later than scheduled the request actually left (client-side lag, for honesty)."""

    @property
    def latency_s(self) -> float:
        return self.end_s - self.send_s

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.send_s


async def run_open_loop(
    base_url: str,
    model: str,
    schedule: Sequence[PlannedRequest],
    *,
    timeout_s: float,
    on_done: Callable[[RequestRecord], None] | None = None,
    start_monotonic: float | None = None,
) -> list[RequestRecord]:
    """Send ``schedule`` to the gateway at ``base_url`` open-loop; one record per request, in order.

    ``timeout_s`` bounds each request from its scheduled send time. ``start_monotonic`` is the
    ``time.monotonic()`` instant the schedule's 0 refers to (default: now), so a caller can line the
    load up with other timed actions. Failures never raise: they become ``error``/``timeout`` records.
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    client = httpx.AsyncClient(base_url=root, timeout=httpx.Timeout(timeout_s), limits=limits)
    t0 = time.monotonic() if start_monotonic is None else start_monotonic  # after the client's set-up
    async with client, asyncio.TaskGroup() as group:
        tasks = [group.create_task(_send(client, model, req, t0, timeout_s, on_done)) for req in schedule]
    return [task.result() for task in tasks]


@dataclass
class _Progress:
    """What one stream has shown so far."""

    first_token_s: float | None = None
    tokens: int = 0
    finished: bool = False
    done: bool = False
    error: str | None = None
    report: dict[str, Any] | None = None


async def _send(
    client: httpx.AsyncClient,
    model: str,
    req: PlannedRequest,
    t0: float,
    timeout_s: float,
    on_done: Callable[[RequestRecord], None] | None,
) -> RequestRecord:
    await asyncio.sleep(max(0.0, t0 + req.send_at_s - time.monotonic()))
    sent_late_s = max(0.0, time.monotonic() - t0 - req.send_at_s)
    seen = _Progress()
    status: Status = "ok"
    try:
        async with asyncio.timeout(max(0.0, timeout_s - sent_late_s)):
            await _stream(client, model, req, t0, seen)
    except TimeoutError:
        status, seen.error = "timeout", f"no answer within {timeout_s:g} s of the scheduled send"
    except httpx.TimeoutException as exc:
        status, seen.error = "timeout", f"{type(exc).__name__}: {exc}"
    except httpx.HTTPError as exc:
        status, seen.error = "error", f"{type(exc).__name__}: {exc}"
    if status == "ok" and seen.error is None and not (seen.done and seen.finished):
        seen.error = "the stream ended before its last chunk and [DONE]"
    if status == "ok" and seen.error is not None:
        status = "error"
    record = RequestRecord(
        index=req.index,
        privacy=req.privacy,
        send_s=req.send_at_s,
        first_token_s=seen.first_token_s,
        end_s=time.monotonic() - t0,
        tokens=seen.tokens,
        status=status,
        error=seen.error,
        epochs=tuple(int(e) for e in (seen.report or {}).get("epochs", ())),
        nodes_by_block=nodes_by_block(seen.report),
        sent_late_s=sent_late_s,
    )
    if on_done is not None:
        on_done(record)
    return record


async def _stream(
    client: httpx.AsyncClient, model: str, req: PlannedRequest, t0: float, seen: _Progress
) -> None:
    body = {
        "model": model,
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "privacy": req.privacy,
    }
    async with client.stream("POST", "/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            seen.error = f"HTTP {resp.status_code}: {_error_message(await resp.aread())}"
            return
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                seen.done = True
                return
            _absorb(json.loads(data), time.monotonic() - t0, seen)


def _absorb(chunk: dict[str, Any], now_s: float, seen: _Progress) -> None:
    """Fold one SSE chunk into what the stream has shown."""
    if "error" in chunk:
        seen.error = str((chunk["error"] or {}).get("message", chunk["error"]))
        return
    choices = chunk.get("choices") or []
    if choices and seen.first_token_s is None:
        seen.first_token_s = now_s
    if choices and choices[0].get("finish_reason") is not None:
        seen.finished = True
    if chunk.get("edgesplit") is not None:
        seen.report = chunk["edgesplit"]
    usage = chunk.get("usage")
    if usage:
        seen.tokens = int(usage.get("completion_tokens", 0))


def nodes_by_block(report: dict[str, Any] | None) -> dict[int, tuple[str, ...]] | None:
    """Block index → sorted nodes that ran it, from the gateway's ``chains`` (None if it sent none)."""
    chains = (report or {}).get("chains")
    if not isinstance(chains, dict):
        return None
    ran: dict[int, set[str]] = {}
    for segments in chains.values():
        for seg in segments:
            for block in range(int(seg["start"]), int(seg["end"])):
                ran.setdefault(block, set()).add(str(seg["node"]))
    return {block: tuple(sorted(nodes)) for block, nodes in sorted(ran.items())}


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode(errors="replace")
