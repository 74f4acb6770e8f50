"""Conversions between wire/messages.py dataclasses and the generated protobuf messages."""

from __future__ import annotations

from edgesplit.model.steps import SamplingParams
from edgesplit.transport.base import Hop, HopTiming, Route
from edgesplit.wire.gen import node_pb2
from edgesplit.wire.messages import (
    LinkProbeResult,
    SegmentStats,
    StepEnvelope,
    StepOutcome,
    TelemetrySnapshot,
)
from edgesplit.wire.tensors import DEFAULT_MAX_TENSOR_BYTES, decode_tensor, encode_tensor


def _timings_to_pb(timings: tuple[HopTiming, ...]) -> list[node_pb2.HopTiming]:
    return [
        node_pb2.HopTiming(node_id=t.node_id, queue_s=t.queue_s, compute_s=t.compute_s, send_s=t.send_s)
        for t in timings
    ]


def _timings_from_pb(timings: object) -> tuple[HopTiming, ...]:
    return tuple(
        HopTiming(node_id=t.node_id, queue_s=t.queue_s, compute_s=t.compute_s, send_s=t.send_s)
        for t in timings  # type: ignore[attr-defined]
    )


def envelope_to_pb(env: StepEnvelope) -> node_pb2.StepRequest:
    """Encode a step for the next hop (the tensor as raw bytes)."""
    assert env.inputs is not None, "only decoded envelopes are forwarded"
    sampling = node_pb2.Sampling(
        temperature=env.sampling.temperature,
        top_p=env.sampling.top_p,
        has_seed=env.sampling.seed is not None,
        seed=env.sampling.seed or 0,
    )
    return node_pb2.StepRequest(
        session_id=env.session_id,
        step_id=env.step_id,
        epoch=env.route.epoch,
        hops=[
            node_pb2.HopSpec(node_id=h.node_id, address=h.address, start=h.start, end=h.end)
            for h in env.route.hops
        ],
        hop_index=env.hop_index,
        position=env.position,
        inputs=encode_tensor(env.inputs),
        sampling=sampling,
        reply_address=env.reply_address,
        reply_node_id=env.reply_node_id,
        timings=_timings_to_pb(env.timings),
        budget_s=env.budget_s,
        privacy_none=not env.privacy_high,
    )


def envelope_from_pb(
    msg: node_pb2.StepRequest, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> tuple[StepEnvelope, Exception | None]:
    """Decode a step; a bad tensor yields ``inputs=None`` plus the error, so the session can be told."""
    route = Route(
        epoch=msg.epoch,
        hops=tuple(Hop(node_id=h.node_id, address=h.address, start=h.start, end=h.end) for h in msg.hops),
    )
    sampling = SamplingParams(
        temperature=msg.sampling.temperature,
        top_p=msg.sampling.top_p if msg.HasField("sampling") else 1.0,
        seed=msg.sampling.seed if msg.sampling.has_seed else None,
    )
    error: Exception | None = None
    try:
        inputs = decode_tensor(msg.inputs, max_tensor_bytes)
    except Exception as exc:
        inputs, error = None, exc
    env = StepEnvelope(
        session_id=msg.session_id,
        step_id=msg.step_id,
        route=route,
        hop_index=msg.hop_index,
        position=msg.position,
        inputs=inputs,
        sampling=sampling,
        reply_address=msg.reply_address,
        reply_node_id=msg.reply_node_id,
        timings=_timings_from_pb(msg.timings),
        budget_s=msg.budget_s,
        privacy_high=not msg.privacy_none,
    )
    return env, error


def outcome_to_pb(outcome: StepOutcome) -> node_pb2.StepResult:
    return node_pb2.StepResult(
        session_id=outcome.session_id,
        step_id=outcome.step_id,
        token_id=outcome.token_id,
        timings=_timings_to_pb(outcome.timings),
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        failed_node_id=outcome.failed_node_id,
    )


def outcome_from_pb(msg: node_pb2.StepResult) -> StepOutcome:
    return StepOutcome(
        session_id=msg.session_id,
        step_id=msg.step_id,
        token_id=msg.token_id,
        timings=_timings_from_pb(msg.timings),
        error_code=msg.error_code,
        error_message=msg.error_message,
        failed_node_id=msg.failed_node_id,
    )


def telemetry_to_pb(t: TelemetrySnapshot) -> node_pb2.Telemetry:
    return node_pb2.Telemetry(
        node_id=t.node_id,
        cpu_utilization=t.cpu_utilization,
        rss_bytes=t.rss_bytes,
        gpu_utilization=t.gpu_utilization,
        segments=[
            node_pb2.SegmentStats(
                start=s.start,
                end=s.end,
                prefill_s_per_token=s.prefill_s_per_token,
                decode_s_per_step=s.decode_s_per_step,
                steps=s.steps,
                sessions=s.sessions,
            )
            for s in t.segments
        ],
        activation_bytes_in=t.activation_bytes_in,
        activation_bytes_out=t.activation_bytes_out,
        queue_depth=t.queue_depth,
        active_sessions=t.active_sessions,
        epochs=list(t.epochs),
        uptime_s=t.uptime_s,
        block_decode_s=t.block_decode_s,
        block_prefill_s=t.block_prefill_s,
        busy_s_total=t.busy_s_total,
        mem_available_bytes=t.mem_available_bytes,
        seq=t.seq,
        link_probes=[
            node_pb2.LinkProbe(
                peer=p.peer,
                rtt_s=p.rtt_s,
                bandwidth_bps=p.bandwidth_bps,
                seq=p.seq,
                probe_bytes=p.probe_bytes,
            )
            for p in t.link_probes
        ],
        profile_decode_s=t.profile_decode_s,
        profile_prefill_s=t.profile_prefill_s,
        profile_utilization=t.profile_utilization,
        background_utilization=t.background_utilization,
        cached_blocks=sorted(t.cached_blocks),
        shard_fetch_bps=t.shard_fetch_bps,
    )


def telemetry_from_pb(msg: node_pb2.Telemetry) -> TelemetrySnapshot:
    return TelemetrySnapshot(
        node_id=msg.node_id,
        cpu_utilization=msg.cpu_utilization,
        rss_bytes=msg.rss_bytes,
        gpu_utilization=msg.gpu_utilization,
        segments=tuple(
            SegmentStats(
                start=s.start,
                end=s.end,
                prefill_s_per_token=s.prefill_s_per_token,
                decode_s_per_step=s.decode_s_per_step,
                steps=s.steps,
                sessions=s.sessions,
            )
            for s in msg.segments
        ),
        activation_bytes_in=msg.activation_bytes_in,
        activation_bytes_out=msg.activation_bytes_out,
        queue_depth=msg.queue_depth,
        active_sessions=msg.active_sessions,
        epochs=tuple(msg.epochs),
        uptime_s=msg.uptime_s,
        block_decode_s=dict(msg.block_decode_s),
        block_prefill_s=dict(msg.block_prefill_s),
        busy_s_total=msg.busy_s_total,
        mem_available_bytes=msg.mem_available_bytes,
        seq=msg.seq,
        link_probes=tuple(
            LinkProbeResult(p.peer, p.rtt_s, p.bandwidth_bps, p.seq, p.probe_bytes) for p in msg.link_probes
        ),
        profile_decode_s=dict(msg.profile_decode_s),
        profile_prefill_s=dict(msg.profile_prefill_s),
        profile_utilization=msg.profile_utilization,
        background_utilization=msg.background_utilization,
        cached_blocks=frozenset(msg.cached_blocks),
        shard_fetch_bps=msg.shard_fetch_bps,
    )
