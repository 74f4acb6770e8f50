"""What the nodes and the gateway report, as the core's per-cycle inputs (pure conversions).

Cumulative node telemetry → per-interval ``NodeTelemetry`` and link probes; the gateway's
``/v1/observations`` → step latencies, hop transfers and demand. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import (
    LatencyObservation,
    LinkObservation,
    NodeTelemetry,
    WorkloadObservation,
)

if TYPE_CHECKING:  # the wire types are only annotations here: the core stays importable without gRPC
    from edgesplit.wire.messages import TelemetrySnapshot


@dataclass
class NodeSeen:
    """The previous telemetry report of one node (its counters are cumulative)."""

    last: TelemetrySnapshot | None = None


def fold_report(seen: NodeSeen, snap: TelemetrySnapshot) -> tuple[NodeTelemetry, list[LinkObservation]]:
    """One node's new snapshot against its previous one → its report and new probe results. A
    restarted node (uptime went back) starts its counters, ``seq`` and probe numbers again."""
    restarted = seen.last is not None and snap.uptime_s < seen.last.uptime_s
    if restarted:
        seen.last = None
    report = replace(to_node_telemetry(snap, seen.last), restarted=restarted)
    observations = probe_observations(snap, seen.last)
    seen.last = snap
    return report, observations


def to_node_telemetry(now: TelemetrySnapshot, before: TelemetrySnapshot | None) -> NodeTelemetry:
    """A node's cumulative report → the core's per-interval ``NodeTelemetry``.

    interval = Δuptime, busy = Δbusy_s_total (the first report covers the node's whole uptime),
    epoch = the newest epoch it holds, utilisation as the node measured it for its machine.
    """
    interval = now.uptime_s - (before.uptime_s if before else 0.0)
    busy = now.busy_s_total - (before.busy_s_total if before else 0.0)
    moved = now.activation_bytes_in + now.activation_bytes_out
    if before is not None:
        moved -= before.activation_bytes_in + before.activation_bytes_out
    return NodeTelemetry(
        node_id=now.node_id,
        seq=now.seq,
        utilization=now.cpu_utilization,
        interval_s=max(interval, 1e-6),
        busy_s=max(busy, 0.0),
        rss_bytes=now.rss_bytes,
        mem_available_bytes=now.mem_available_bytes,
        block_decode_s=dict(now.block_decode_s),
        block_prefill_s=dict(now.block_prefill_s),
        activation_bytes=max(moved, 0),
        queue_depth=now.queue_depth,
        sessions=now.active_sessions,
        epoch=max(now.epochs, default=0),
        loaded_blocks=now.loaded_blocks,
        cached_blocks=now.cached_blocks,
        shard_fetch_bps=now.shard_fetch_bps or None,
        background=now.background_utilization,
        profile_decode_s=dict(now.profile_decode_s),
        profile_utilization=now.profile_utilization,
    )


def probe_observations(now: TelemetrySnapshot, before: TelemetrySnapshot | None) -> list[LinkObservation]:
    """The link probes a node ran since its previous report, as link observations (RTT, bandwidth)."""
    last = max((p.seq for p in before.link_probes), default=0) if before is not None else 0
    return [
        LinkObservation(now.node_id, p.peer, p.rtt_s, bandwidth_bps=p.bandwidth_bps or None)
        for p in now.link_probes
        if p.seq > last
    ]


def gateway_inputs(
    observed: Mapping[str, Any],
    plan: Plan | None,
    blocks: Sequence[BlockCost],
    source: str,
    interval_s: float,
) -> tuple[list[LatencyObservation], list[LinkObservation], WorkloadObservation]:
    """``GET /v1/observations`` → decode-step latencies by epoch, hop transfers, demand."""
    steps = list(observed.get("steps", ()))
    latencies = [
        LatencyObservation(float(s["latency_s"]), int(s["epoch"])) for s in steps if s["tokens"] == 1
    ]
    links: list[LinkObservation] = []
    if plan is not None:
        segments = plan.segments
        for s in steps:
            hops = s["hops"]
            if s["epoch"] != plan.epoch or len(hops) != len(segments):
                continue
            for i, (hop, seg) in enumerate(zip(hops, segments, strict=True)):
                last = i == len(segments) - 1
                nxt = source if last else segments[i + 1].node_id
                nbytes = 8 if last else blocks[seg.end - 1].out_bytes * int(s["tokens"])
                if nxt != hop["node"]:
                    links.append(LinkObservation(hop["node"], nxt, None, nbytes, float(hop["send_s"])))
    tokens = sum(int(s["tokens"]) for s in steps)
    context = [int(s["context"]) for s in steps]
    workload = WorkloadObservation(
        tokens / max(interval_s, 1e-6),
        int(observed.get("live_sessions", 0)),
        sum(context) / len(context) if context else 0.0,
    )
    return latencies, links, workload
