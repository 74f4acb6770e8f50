"""Link probes: each node measures RTT and bandwidth to its peers through the data plane's own link.

A round to one peer sends a small probe (its round trip is the RTT) and, when the bandwidth budget
allows, a larger one; bandwidth = Δbytes / Δtime between the two, so the fixed per-message cost
cancels. Both go through the same ``LinkShaper`` as activations (DESIGN §3: emulated time is real
time) and queue behind them. The time a probe spends getting onto the link is measured like an
activation's hop send time; on an unshaped link (real hardware) that is zero, and the whole round
trip is used instead (on loopback that only measures this machine's gRPC overhead). The large probe
is sized to take ``target_s`` on the wire at the last estimate, and rounds are spaced so that probing
uses at most ``max_link_fraction`` of the link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from edgesplit.errors import EdgesplitError
from edgesplit.transport.peers import PeerPool
from edgesplit.wire.messages import LinkProbeResult

log = logging.getLogger(__name__)

SHAPED_S = 1e-3
"""A probe that waited this long to get onto the link crossed a shaped (emulated) link."""
COLLAPSE_FACTOR = 4.0
"""A medium probe taking this many times the target means the link collapsed: skip the full one."""


@dataclass(frozen=True)
class ProbeSettings:
    """How often and how hard a node probes each peer."""

    period_s: float = 0.5
    """A round (RTT probe, and a bandwidth probe when the budget allows) per peer this often."""
    small_bytes: int = 64
    target_s: float = 0.02
    """A bandwidth probe should occupy the link this long: long against timer and scheduling noise."""
    max_link_fraction: float = 0.02
    """Bandwidth probes use at most this share of the link's estimated capacity."""
    min_probe_bytes: int = 4096
    max_probe_bytes: int = 1024 * 1024
    first_probe_bytes: int = 65536
    timeout_s: float = 5.0
    history: int = 64
    """Results kept for telemetry (the orchestrator reads those newer than the last it saw)."""
    max_rounds_per_period: int = 8
    """A big cluster is probed in turns: at most this many peers start a round each period."""


@dataclass
class _PeerState:
    address: str
    size: int
    bandwidth_bps: float | None = None
    next_bandwidth_s: float = 0.0
    task: asyncio.Task[None] | None = None


class LinkProber:
    """Probes every known peer on its own schedule; ``results()`` feeds the node's telemetry."""

    def __init__(self, own_id: str, pool: PeerPool, settings: ProbeSettings | None = None) -> None:
        self.own_id = own_id
        self.settings = settings or ProbeSettings()
        self._pool = pool
        self._peers: dict[str, _PeerState] = {}
        self._results: deque[LinkProbeResult] = deque(maxlen=self.settings.history)
        self._seq = 0

    def set_peers(self, peers: Mapping[str, str]) -> None:
        """Adopt the orchestrator's directory (node id → address); this node itself is skipped."""
        for peer, address in peers.items():
            if peer == self.own_id or not address:
                continue
            state = self._peers.get(peer)
            if state is None:
                self._peers[peer] = _PeerState(address, self.settings.first_probe_bytes)
            else:
                state.address = address

    def results(self) -> tuple[LinkProbeResult, ...]:
        return tuple(self._results)

    async def run(self) -> None:
        """Until cancelled: each period, start rounds for peers whose last round finished, in turns."""
        turn = 0
        try:
            while True:
                peers = list(self._peers.items())
                started = 0
                for i in range(len(peers)):
                    peer, state = peers[(turn + i) % len(peers)]
                    if started >= self.settings.max_rounds_per_period:
                        break
                    if state.task is None or state.task.done():
                        state.task = asyncio.get_running_loop().create_task(self._round(peer, state))
                        started += 1
                turn += started
                await asyncio.sleep(self.settings.period_s)
        finally:
            tasks = [s.task for s in self._peers.values() if s.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(self, peer: str, state: _PeerState) -> None:
        s = self.settings
        try:
            small = await self._probe(peer, state.address, s.small_bytes)
            now = time.monotonic()
            bandwidth = 0.0
            sent = 0
            if now >= state.next_bandwidth_s:
                bandwidth, sent = await self._bandwidth(peer, state, small)
                spacing = s.period_s
                if state.bandwidth_bps:
                    # Paced for what the next round will send (a round after a collapse sent more
                    # than the new size, once; that must not silence the link for many seconds).
                    upcoming = state.size + max(s.min_probe_bytes, state.size // 8)
                    spacing = max(spacing, upcoming * 8 / (state.bandwidth_bps * s.max_link_fraction))
                state.next_bandwidth_s = now + spacing
            self._seq += 1
            self._results.append(LinkProbeResult(peer, small[1], bandwidth, self._seq, sent))
        except (EdgesplitError, TimeoutError) as exc:
            log.debug("probe of %s failed: %s", peer, exc)

    async def _bandwidth(self, peer: str, state: _PeerState, small: tuple[float, float]) -> tuple[float, int]:
        """A medium probe (1/8 size), then the full one — unless the medium one alone took several
        times the target (the link collapsed: the full one would hold the link far too long). The
        estimate is the last probe's: the full one's long time is the least disturbed by scheduling.
        """
        s = self.settings
        sent = 0
        best = 0.0
        for size in (max(s.min_probe_bytes, state.size // 8), state.size):
            took = await self._probe(peer, state.address, size)
            sent += size
            extra_s = took[0] - small[0] if took[0] >= SHAPED_S else took[1] - small[1]
            best = (size - s.small_bytes) * 8 / extra_s if extra_s > 0 else 0.0
            if extra_s >= COLLAPSE_FACTOR * s.target_s or size >= state.size:
                break
        if best <= 0:
            state.size = min(s.max_probe_bytes, state.size * 8)
            return 0.0, sent
        state.bandwidth_bps = best
        state.size = max(s.min_probe_bytes, min(s.max_probe_bytes, int(best * s.target_s / 8)))
        return best, sent

    async def _probe(self, peer: str, address: str, nbytes: int) -> tuple[float, float]:
        """One probe of ``nbytes``: the link, then the real call; returns (onto-the-link s, round trip s)."""
        started = time.perf_counter()
        await self._pool.link(peer).transmit(nbytes)
        wire_s = time.perf_counter() - started
        stub = self._pool.node(address)
        async with asyncio.timeout(self.settings.timeout_s):
            await stub.probe(self.own_id, bytes(nbytes), self.settings.timeout_s)
        return wire_s, time.perf_counter() - started
