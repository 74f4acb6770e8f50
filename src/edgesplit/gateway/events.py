"""The gateway's event feed (GET /v1/events): decisions the orchestrator posts and plans committed here.

A bounded in-memory log with sequence numbers; followers wait on a condition, never poll.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from functools import partial
from typing import Any


class EventLog:
    """The last ``capacity`` events, each a JSON object with ``seq`` and ``at`` (unix seconds) added."""

    def __init__(self, capacity: int = 1000) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0
        self._changed = asyncio.Condition()

    async def add(self, event: dict[str, Any]) -> dict[str, Any]:
        async with self._changed:
            self._seq += 1
            stored = {"seq": self._seq, "at": event.get("at", time.time()), **event}
            self._events.append(stored)
            self._changed.notify_all()
        return stored

    def _newer_than(self, seq: int) -> bool:
        return self._seq > seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self._events if e["seq"] > seq]

    async def follow(self, after: int, follow: bool, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
        """SSE lines: every stored event after ``after``, then (when ``follow``) new ones as they come."""
        last = after
        while True:
            for event in self.since(last):
                last = event["seq"]
                yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
            if not follow:
                return
            timed_out = False
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(partial(self._newer_than, last)), heartbeat_s
                    )
                except TimeoutError:
                    timed_out = True
            if timed_out:
                yield ": keep-alive\n\n"  # an SSE comment: clients ignore it, proxies keep the stream
