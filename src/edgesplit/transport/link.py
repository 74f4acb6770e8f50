"""Link emulation applied by the sender: token-bucket bandwidth, RTT/2 one-way delay, jitter.

Real waiting (DESIGN §3): ``transmit`` sleeps until the bytes would have arrived. ``LinkShaper``'s
arithmetic is pure given a clock, so tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkSpec:
    """One direction of an emulated link. ``bandwidth_bps`` is bits per second; 0 means unlimited."""

    bandwidth_bps: float = 0.0
    rtt_s: float = 0.0
    jitter_s: float = 0.0
    burst_bytes: int = 0

    @property
    def is_ideal(self) -> bool:
        return self.bandwidth_bps <= 0 and self.rtt_s <= 0 and self.jitter_s <= 0

    def expected_delay_s(self, nbytes: int) -> float:
        """The cost model's hop(bytes) = rtt/2 + bytes/bandwidth, for an idle link without jitter."""
        serialise = nbytes * 8 / self.bandwidth_bps if self.bandwidth_bps > 0 else 0.0
        return self.rtt_s / 2 + serialise


class LinkShaper:
    """A FIFO token bucket in bytes plus propagation delay; concurrent senders queue behind each other.

    The bucket may go into debt: a message larger than the tokens available waits until the debt
    is repaid at the link rate, which is exactly serialisation at ``bandwidth_bps``.
    """

    def __init__(
        self,
        spec: LinkSpec,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int = 0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._spec = spec
        self._tokens = float(spec.burst_bytes)
        self._last = clock()

    @property
    def spec(self) -> LinkSpec:
        return self._spec

    def update(self, spec: LinkSpec) -> None:
        """Change the link at run time; bytes already charged keep their debt."""
        self._refill()
        self._spec = spec
        self._tokens = min(self._tokens, float(spec.burst_bytes))

    def _refill(self) -> None:
        now = self._clock()
        rate_bytes_s = self._spec.bandwidth_bps / 8
        if rate_bytes_s > 0:
            self._tokens = min(
                float(self._spec.burst_bytes), self._tokens + (now - self._last) * rate_bytes_s
            )
        self._last = now

    def charge(self, nbytes: int) -> float:
        """Account ``nbytes`` now and return how long until they have arrived at the peer."""
        self._refill()
        spec = self._spec
        serialise = 0.0
        if spec.bandwidth_bps > 0:
            self._tokens -= nbytes
            if self._tokens < 0:
                serialise = -self._tokens / (spec.bandwidth_bps / 8)
        jitter = self._rng.uniform(-spec.jitter_s, spec.jitter_s) if spec.jitter_s > 0 else 0.0
        return max(0.0, serialise + spec.rtt_s / 2 + jitter)

    async def transmit(self, nbytes: int) -> float:
        """Wait until ``nbytes`` sent now would have arrived; returns the seconds waited."""
        if self._spec.is_ideal:
            return 0.0
        delay = self.charge(nbytes)
        if delay > 0:
            await self._sleep(delay)
        return delay
