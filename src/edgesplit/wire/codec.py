"""Conversions between wire/messages.py dataclasses and the generated protobuf messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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

T = TypeVar("T")

# Fields a dataclass and its protobuf message share by name and plain type, listed once for both
# directions (a field added to one direction only would silently read as its default on the other).
HOP_TIMING_FIELDS = ("node_id", "queue_s", "compute_s", "send_s")
STEP_RESULT_FIELDS = ("session_id", "step_id", "token_id", "error_code", "error_message", "failed_node_id")
SEGMENT_STATS_FIELDS = ("start", "end", "prefill_s_per_token", "decode_s_per_step", "steps", "sessions")
LINK_PROBE_FIELDS = ("peer", "rtt_s", "bandwidth_bps", "seq", "probe_bytes")
TELEMETRY_FIELDS = (
    "node_id",
    "cpu_utilization",
    "rss_bytes",
    "gpu_utilization",
    "activation_bytes_in",
    "activation_bytes_out",
    "queue_depth",
    "active_sessions",
    "uptime_s",
    "busy_s_total",
    "mem_available_bytes",
    "seq",
    "profile_utilization",
    "background_utilization",
    "shard_fetch_bps",
)
"""TelemetrySnapshot's scalar fields; its collections are converted one by one below."""


def _copy(source: object, target: Callable[..., T], names: tuple[str, ...], **converted: Any) -> T:
    """``target`` built from ``source``'s fields ``names`` (same name both sides) plus ``converted``."""
    return target(**{name: getattr(source, name) for name in names}, **converted)


def _timings_to_pb(timings: tuple[HopTiming, ...]) -> list[node_pb2.HopTiming]:
    return [_copy(t, node_pb2.HopTiming, HOP_TIMING_FIELDS) for t in timings]


def _timings_from_pb(timings: object) -> tuple[HopTiming, ...]:
    return tuple(_copy(t, HopTiming, HOP_TIMING_FIELDS) for t in timings)  # type: ignore[attr-defined]


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
        continue_steps=env.continue_steps,
        stop_token_ids=env.stop_token_ids,
        continue_budget_s=env.continue_budget_s,
        continued=env.continued,
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
        continue_steps=msg.continue_steps,
        stop_token_ids=tuple(msg.stop_token_ids),
        continue_budget_s=msg.continue_budget_s,
        continued=msg.continued,
    )
    return env, error


def outcome_to_pb(outcome: StepOutcome) -> node_pb2.StepResult:
    return _copy(outcome, node_pb2.StepResult, STEP_RESULT_FIELDS, timings=_timings_to_pb(outcome.timings))


def outcome_from_pb(msg: node_pb2.StepResult) -> StepOutcome:
    return _copy(msg, StepOutcome, STEP_RESULT_FIELDS, timings=_timings_from_pb(msg.timings))


def telemetry_to_pb(t: TelemetrySnapshot) -> node_pb2.Telemetry:
    return _copy(
        t,
        node_pb2.Telemetry,
        TELEMETRY_FIELDS,
        segments=[_copy(s, node_pb2.SegmentStats, SEGMENT_STATS_FIELDS) for s in t.segments],
        epochs=list(t.epochs),
        block_decode_s=t.block_decode_s,
        block_prefill_s=t.block_prefill_s,
        link_probes=[_copy(p, node_pb2.LinkProbe, LINK_PROBE_FIELDS) for p in t.link_probes],
        profile_decode_s=t.profile_decode_s,
        profile_prefill_s=t.profile_prefill_s,
        cached_blocks=sorted(t.cached_blocks),
    )


def telemetry_from_pb(msg: node_pb2.Telemetry) -> TelemetrySnapshot:
    return _copy(
        msg,
        TelemetrySnapshot,
        TELEMETRY_FIELDS,
        segments=tuple(_copy(s, SegmentStats, SEGMENT_STATS_FIELDS) for s in msg.segments),
        epochs=tuple(msg.epochs),
        block_decode_s=dict(msg.block_decode_s),
        block_prefill_s=dict(msg.block_prefill_s),
        link_probes=tuple(_copy(p, LinkProbeResult, LINK_PROBE_FIELDS) for p in msg.link_probes),
        profile_decode_s=dict(msg.profile_decode_s),
        profile_prefill_s=dict(msg.profile_prefill_s),
        cached_blocks=frozenset(msg.cached_blocks),
    )
