"""Coalescing sends: items submitted in the same event-loop turn (or the next few) for one peer leave
as one message.

A compute batch finishes for many sessions at once; their outputs for the same next hop then cross
the network as one gRPC call instead of one each. Owns no task of its own: each flush runs under the
caller's supervisor (``spawn``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    """Collects items for ``defer_turns`` loop turns, then sends them with one ``send(items, timeout_s)``.

    A later turn costs microseconds and catches submitters that resume a turn or two apart (e.g. gateway
    requests, whose streaming responses sit between one result and the next step).
    """

    def __init__(
        self,
        send: Callable[[list[T], float], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        defer_turns: int = 1,
    ) -> None:
        self._send = send
        self._spawn = spawn
        self._defer_turns = max(1, defer_turns)
        self._items: list[tuple[T, float, asyncio.Future[None]]] = []
        self._scheduled = False

    def submit(self, item: T, timeout_s: float) -> asyncio.Future[None]:
        """Queue ``item``; the future resolves when its message was accepted, or carries the error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._items.append((item, timeout_s, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._after, loop, self._defer_turns)
        return future

    def _after(self, loop: asyncio.AbstractEventLoop, turns: int) -> None:
        if turns > 1:
            loop.call_soon(self._after, loop, turns - 1)
        else:
            self._spawn(self._flush())

    async def _flush(self) -> None:
        items, self._items, self._scheduled = self._items, [], False
        try:
            await self._send([item for item, _, _ in items], max(t for _, t, _ in items))
        except Exception as exc:
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, _, future in items:
                if not future.done():
                    future.set_result(None)
