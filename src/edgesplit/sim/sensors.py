"""The measurement process: what nodes, probes and the gateway would report, derived from the simulated
truth with seeded noise, in exactly the shapes the live orchestrator feeds its controller.

This is the simulator's only path from truth to the controller (DESIGN §3 rule 1): every figure that
leaves here went through the noise process, and the controller never gets a reference to the truth.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgesplit.orchestrator.controller_settings import MonitoringInputs
from edgesplit.orchestrator.profiler import (
    LatencyObservation,
    LinkObservation,
    NodeTelemetry,
    WorkloadObservation,
)
from edgesplit.sim.truth import TrueCluster


@dataclass(frozen=True)
class NoiseSettings:
    """How far measurements stray from the truth (relative figures are standard deviations)."""

    timing_sigma: float = 0.05
    """A measured compute time is the true one times exp(N(0, σ)) (timer and scheduling noise)."""
    latency_sigma: float = 0.02
    """The gateway's step latency: the true one times exp(N(0, σ))."""
    rtt_sigma: float = 0.10
    """A probe RTT: the true one times exp(N(0, σ)), plus the link's jitter."""
    rtt_floor_s: float = 50e-6
    """Every probe sees at least this much (serialisation, the event loop)."""
    bandwidth_sigma: float = 0.08
    """A bandwidth probe is the true figure times (1 − |N(0, σ)|): delays only ever make it look slower."""
    utilization_sigma: float = 0.02
    """Absolute noise on a node's reported utilisation and background load."""


@dataclass
class NodeInterval:
    """What one live node did in one monitoring interval, true values (the engine fills it in)."""

    busy_s: float = 0.0
    decode_s_per_step: dict[tuple[int, int], float] = field(default_factory=dict)
    """Per hosted segment (start, end): the true seconds of its last decode step."""
    prefill_s_per_token: dict[tuple[int, int], float] = field(default_factory=dict)
    queue_depth: int = 0
    sessions: int = 0
    epoch: int = 0
    loaded_blocks: frozenset[int] = frozenset()


@dataclass
class GatewayInterval:
    """What the gateway saw in one monitoring interval, true values."""

    steps: list[tuple[float, int]] = field(default_factory=list)
    """(latency_s, epoch) of each decode step finished."""
    transfers: list[tuple[str, str, int, float]] = field(default_factory=list)
    """(from, to, bytes, seconds on the link) of each activation hop."""
    tokens: int = 0
    live_sessions: int = 0
    contexts: list[int] = field(default_factory=list)
    failed_nodes: set[str] = field(default_factory=set)
    privacy_high_pending: int = 0


class Sensors:
    """Turns one interval's true records into ``MonitoringInputs``; one seeded RNG for all noise."""

    def __init__(
        self, truth: TrueCluster, noise: NoiseSettings, seed: int, restart_resets_seq: bool = True
    ) -> None:
        self._truth = truth
        self.noise = noise
        self._rng = random.Random(seed)
        self._seq: dict[str, int] = {}
        self._restart_resets_seq = restart_resets_seq

    def _lognormal(self, sigma: float) -> float:
        return math.exp(self._rng.gauss(0.0, sigma)) if sigma > 0 else 1.0

    def _util(self, value: float) -> float:
        return min(1.0, max(0.0, value + self._rng.gauss(0.0, self.noise.utilization_sigma)))

    def join_profile(self, node: str, restarted: bool = False) -> NodeTelemetry:
        """A node's first report: every block timed once at its current load (node/join_profile.py)."""
        if restarted and self._restart_resets_seq:
            self._seq[node] = 0  # a new process
        t = self._truth
        truth = t.nodes[node]
        profile = {
            b: t.compute_s(node, b, b + 1, 0) * self._lognormal(self.noise.timing_sigma)
            for b in range(len(t.blocks))
            if t.decode_s[b] > 0
        }
        background = self._util(truth.background_load)
        return NodeTelemetry(
            node_id=node,
            seq=self._next_seq(node),
            utilization=background,
            background=background,
            mem_available_bytes=truth.memory_cap_bytes or 0,
            profile_decode_s=profile,
            profile_utilization=background,
        )

    def node_report(self, node: str, stats: NodeInterval, interval_s: float) -> NodeTelemetry:
        """One interval's telemetry of a live node (node/telemetry.py's fields, per-interval)."""
        t = self._truth
        truth = t.nodes[node]
        sigma = self.noise.timing_sigma
        # A node splits a segment's time over its blocks by the model's own work shares, as live.
        share = [b.decode_s for b in t.blocks]
        block_decode: dict[int, float] = {}
        for (start, end), seconds in sorted(stats.decode_s_per_step.items()):
            block_decode.update(_per_block(share, start, end, seconds * self._lognormal(sigma)))
        block_prefill: dict[int, float] = {}
        for (start, end), seconds in sorted(stats.prefill_s_per_token.items()):
            block_prefill.update(_per_block(share, start, end, seconds * self._lognormal(sigma)))
        busy = stats.busy_s * self._lognormal(sigma)
        background = self._util(truth.background_load)
        own = min(1.0, busy / interval_s) if interval_s > 0 else 0.0
        param = sum(t.blocks[b].param_bytes for b in stats.loaded_blocks)
        cap = truth.memory_cap_bytes
        return NodeTelemetry(
            node_id=node,
            seq=self._next_seq(node),
            utilization=self._util(min(1.0, own + truth.background_load)),
            interval_s=interval_s,
            busy_s=busy,
            mem_available_bytes=0 if cap is None else max(0, cap - param),
            block_decode_s=block_decode,
            block_prefill_s=block_prefill,
            queue_depth=stats.queue_depth,
            sessions=stats.sessions,
            epoch=stats.epoch,
            loaded_blocks=stats.loaded_blocks,
            cached_blocks=stats.loaded_blocks,
            background=background,
        )

    def probes(self, pairs: Sequence[tuple[str, str]]) -> list[LinkObservation]:
        """One probe round per pair of live nodes: an RTT and a (one-sided noisy) bandwidth."""
        n = self.noise
        out = []
        for a, b in pairs:
            link = self._truth.link(a, b)
            jitter = abs(self._rng.gauss(0.0, link.jitter_s)) if link.jitter_s > 0 else 0.0
            rtt = max(n.rtt_floor_s, link.rtt_s * self._lognormal(n.rtt_sigma) + jitter)
            low = min(0.9, abs(self._rng.gauss(0.0, n.bandwidth_sigma)))
            out.append(LinkObservation(a, b, rtt, bandwidth_bps=link.bandwidth_bps * (1.0 - low)))
        return out

    def monitoring_inputs(
        self,
        reports: Sequence[NodeTelemetry],
        probes: Sequence[LinkObservation],
        gateway: GatewayInterval,
        interval_s: float,
    ) -> MonitoringInputs:
        """The cycle's inputs, as ``OrchestratorService._monitoring_inputs`` assembles them live."""
        sigma = self.noise.latency_sigma
        latencies = [LatencyObservation(s * self._lognormal(sigma), e) for s, e in gateway.steps]
        transfers = [
            LinkObservation(a, b, None, nbytes, seconds * self._lognormal(self.noise.timing_sigma))
            for a, b, nbytes, seconds in gateway.transfers
        ]
        contexts = gateway.contexts
        workload = WorkloadObservation(
            gateway.tokens / max(interval_s, 1e-6),
            gateway.live_sessions,
            sum(contexts) / len(contexts) if contexts else 0.0,
        )
        return MonitoringInputs(
            reports=tuple(reports),
            links=(*probes, *transfers),
            latencies=tuple(latencies),
            workload=workload,
            pending_privacy_high=gateway.privacy_high_pending,
            failed_nodes=frozenset(gateway.failed_nodes),
        )

    def _next_seq(self, node: str) -> int:
        self._seq[node] = self._seq.get(node, 0) + 1
        return self._seq[node]


def _per_block(weights: Sequence[float], start: int, end: int, seconds: float) -> Mapping[int, float]:
    """A segment's measured time attributed to its blocks by their share of the work (node/segments.py)."""
    share = list(weights[start:end])
    total = sum(share)
    if total <= 0:
        share, total = [1.0] * (end - start), float(end - start)
    return {start + i: seconds * w / total for i, w in enumerate(share)}
