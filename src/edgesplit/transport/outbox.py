"""Coalescing sends: items submitted in the same event-loop turn for one peer leave as one message.

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
    """Collects items until the loop's next turn, then sends them with one ``send(items, timeout_s)``."""

    def __init__(
        self,
        send: Callable[[list[T], float], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self._send = send
        self._spawn = spawn
        self._items: list[tuple[T, float, asyncio.Future[None]]] = []
        self._scheduled = False

    def submit(self, item: T, timeout_s: float) -> asyncio.Future[None]:
        """Queue ``item``; the future resolves when its message was accepted, or carries the error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._items.append((item, timeout_s, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(lambda: self._spawn(self._flush()))
        return future

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
