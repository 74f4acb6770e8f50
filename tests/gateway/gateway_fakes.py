"""A fake chain for gateway tests: next token is a fixed function of the whole history.

It keeps a per-session "cache" (the history it has seen) and checks positions exactly like a node,
so the gateway's session handling (prefill, decode, re-prefill, end) is what is under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from edgesplit.errors import NodeUnavailableError, SessionNotFoundError
from edgesplit.transport.base import ChainResult, ChainStep, HopTiming, Route
from edgesplit.transport.link import LinkSpec

FIRST_ID = 10  # keep clear of the special tokens (ids 0..3 in the built-in tokenizers)


def next_token(history: list[int], vocab: int) -> int:
    """The fake model: a deterministic mix of the history (the test oracle computes the same)."""
    acc = len(history)
    for i, t in enumerate(history):
        acc = (acc * 31 + t * (i + 7)) % 1_000_003
    return FIRST_ID + acc % (vocab - FIRST_ID)


def reference_ids(prompt: list[int], n: int, vocab: int) -> list[int]:
    history = list(prompt)
    out = []
    for _ in range(n):
        token = next_token(history, vocab)
        out.append(token)
        history.append(token)
    return out


@dataclass
class FakeChain:
    """SegmentClient over the fake model, with switches to inject the failures a real chain has."""

    vocab: int
    eos_id: int | None = None
    eos_after: int | None = None  # emit EOS as the n-th generated token of every session
    lose_cache_after: int | None = None  # forget a session once, after it generated n tokens
    fail_after: int | None = None  # raise NodeUnavailableError after n generated tokens
    step_delay_s: float = 0.0
    caches: dict[str, list[int]] = field(default_factory=dict)
    generated: dict[str, int] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    epochs_seen: list[int] = field(default_factory=list)
    steps: int = 0
    _lost: set[str] = field(default_factory=set)

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        self.steps += 1
        self.epochs_seen.append(route.epoch)
        if self.step_delay_s:
            await asyncio.sleep(self.step_delay_s)
        cache = self.caches.get(step.session_id, [])
        if step.position != len(cache):
            raise SessionNotFoundError(
                f"session {step.session_id} holds {len(cache)} tokens, not {step.position}"
            )
        history = cache + list(step.token_ids)
        self.caches[step.session_id] = history
        count = self.generated.get(step.session_id, 0)
        if self.fail_after is not None and count >= self.fail_after:
            raise NodeUnavailableError("node mec1 is gone")
        if self.lose_cache_after is not None and count == self.lose_cache_after and not self._lost:
            self._lost.add(step.session_id)
            del self.caches[step.session_id]
            raise SessionNotFoundError("cache evicted")
        self.generated[step.session_id] = count + 1
        if self.eos_after is not None and count + 1 == self.eos_after:
            token = self.eos_id
        else:
            token = next_token(history, self.vocab)
        timing = HopTiming(route.hops[-1].node_id, 0.0, 0.001, 0.0)
        return ChainResult(step.session_id, int(token), (timing,))  # type: ignore[arg-type]

    async def end_session(self, route: Route, session_id: str) -> None:
        self.ended.append(session_id)
        self.caches.pop(session_id, None)

    async def close(self) -> None:
        return None


@dataclass
class ShapedChain(FakeChain):
    """The fake chain plus the transport's link switch (``set_links``), recording every replacement."""

    replaced: list[tuple[dict[str, LinkSpec], LinkSpec | None]] = field(default_factory=list)

    def set_links(self, links: dict[str, LinkSpec], default_link: LinkSpec | None = None) -> None:
        self.replaced.append((links, default_link))
