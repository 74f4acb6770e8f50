"""What the gateway measured for the orchestrator's monitoring cycle: step latencies by epoch, demand,
hop transfer times, failed nodes, waiting privacy-high requests. Served at ``GET /v1/observations``.

A bounded in-memory log with a sequence number; the orchestrator asks for what came after its last
read. Records only what was measured here; decides nothing.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgesplit.transport.base import HopTiming

MAX_SAMPLES = 4096


@dataclass
class GatewayObservations:
    """Filled by the decode loop; read (and never cleared) by ``GET /v1/observations?after=SEQ``."""

    seq: int = 0
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    failed_nodes: dict[str, float] = field(default_factory=dict)
    """node id → monotonic time of its last failed step (reported for ``FAILED_FOR_S``)."""
    privacy_high_waiting: int = 0
    privacy_high_last_s: float = -1e9
    """When a privacy-high request last asked for a route: while such traffic is recent, plans keep
    privacy-critical blocks trusted (reported as ``privacy_high_recent``)."""
    live_sessions: int = 0
    tokens_total: int = 0

    def step(self, epoch: int, latency_s: float, tokens: int, context: int, hops: list[HopTiming]) -> None:
        """One successful step: wall-clock latency at the gateway and each hop's measured send time."""
        self.seq += 1
        self.tokens_total += tokens
        self.samples.append(
            {
                "seq": self.seq,
                "epoch": epoch,
                "latency_s": latency_s,
                "tokens": tokens,
                "context": context,
                "hops": [
                    {"node": h.node_id, "queue_s": h.queue_s, "compute_s": h.compute_s, "send_s": h.send_s}
                    for h in hops
                ],
            }
        )

    def node_failed(self, node_id: str) -> None:
        self.failed_nodes[node_id] = time.monotonic()

    def snapshot(self, after: int, failed_for_s: float = 10.0, recent_s: float = 10.0) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "seq": self.seq,
            "steps": [s for s in self.samples if s["seq"] > after],
            "tokens_total": self.tokens_total,
            "live_sessions": self.live_sessions,
            "privacy_high_waiting": self.privacy_high_waiting,
            "privacy_high_recent": now - self.privacy_high_last_s <= recent_s,
            "failed_nodes": sorted(n for n, at in self.failed_nodes.items() if now - at <= failed_for_s),
        }
