"""Codecs, error mapping and canonical plan bytes: pure, fast."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from edgesplit import errors as E
from edgesplit.errors import PlanRejectedError, SessionError
from edgesplit.model.steps import SamplingParams
from edgesplit.transport.base import Hop, HopTiming, Route
from edgesplit.wire.codec import (
    envelope_from_pb,
    envelope_to_pb,
    outcome_from_pb,
    outcome_to_pb,
    telemetry_from_pb,
    telemetry_to_pb,
)
from edgesplit.wire.errors import (
    ERROR_BY_STATUS,
    STATUS_BY_ERROR,
    all_error_classes,
    error_from_code,
    status_for,
)
from edgesplit.wire.gen import node_pb2
from edgesplit.wire.messages import (
    LinkProbeResult,
    PlanSegment,
    PlanSpec,
    SegmentStats,
    StepEnvelope,
    StepOutcome,
    TelemetrySnapshot,
)
from edgesplit.wire.tensors import DTYPES, decode_tensor, encode_tensor


@given(
    dtype=st.sampled_from(sorted(DTYPES)),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_tensor_roundtrip_is_bit_exact(dtype: str, shape: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g) * 1000).to(DTYPES[dtype])
    back = decode_tensor(encode_tensor(t))
    assert back.dtype == t.dtype and back.shape == t.shape
    assert torch.equal(back.reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8))


def test_noncontiguous_tensor_is_sent_in_logical_order() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).T  # (4, 3), not contiguous
    assert torch.equal(decode_tensor(encode_tensor(t)), t)


@pytest.mark.parametrize(
    "message",
    [
        node_pb2.Tensor(data=b"\0" * 8, dtype="float64", shape=[1]),  # unknown dtype
        node_pb2.Tensor(data=b"\0" * 7, dtype="float32", shape=[2]),  # wrong byte count
        node_pb2.Tensor(data=b"", dtype="float32", shape=[-1]),  # negative dim
        node_pb2.Tensor(data=b"", dtype="float32", shape=[1 << 20, 1 << 20]),  # oversized
    ],
)
def test_bad_tensor_messages_are_session_errors(message: node_pb2.Tensor) -> None:
    with pytest.raises(SessionError):
        decode_tensor(message, max_bytes=1 << 20)


def test_envelope_roundtrip_and_undecodable_inputs_keep_the_header() -> None:
    route = Route(3, (Hop("a", "h:1", 0, 2), Hop("b", "h:2", 2, 5)))
    env = StepEnvelope(
        "s",
        7,
        route,
        1,
        4,
        torch.ones(2, 3),
        SamplingParams(0.5, 0.9, 11),
        "h:9",
        "gw",
        (HopTiming("a", 0.1, 0.2, 0.3),),
        2.5,
    )
    back, error = envelope_from_pb(envelope_to_pb(env))
    assert error is None and back.inputs is not None and torch.equal(back.inputs, env.inputs)  # type: ignore[arg-type]
    assert back == StepEnvelope(**{**env.__dict__, "inputs": back.inputs})
    msg = envelope_to_pb(env)
    msg.inputs.dtype = "complex128"
    broken, error = envelope_from_pb(msg)
    assert isinstance(error, SessionError) and broken.inputs is None and broken.session_id == "s"


def _no_field_at_its_default(obj: object) -> None:
    """A round trip that dropped any field would bring back its default: make sure none is one."""
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert getattr(obj, f.name) != default, f"set {type(obj).__name__}.{f.name} in this test"


def test_step_outcome_roundtrip_keeps_every_field() -> None:
    outcome = StepOutcome("s", 9, 42, (HopTiming("a", 0.1, 0.2, 0.3),), "capacity", "full", "b")
    _no_field_at_its_default(outcome)
    assert outcome_from_pb(outcome_to_pb(outcome)) == outcome


def test_telemetry_roundtrip_keeps_every_field() -> None:
    snapshot = TelemetrySnapshot(
        node_id="n1",
        cpu_utilization=0.25,
        rss_bytes=123,
        gpu_utilization=0.5,
        segments=(SegmentStats(1, 3, 0.01, 0.02, 7, 2),),
        activation_bytes_in=11,
        activation_bytes_out=12,
        queue_depth=3,
        active_sessions=4,
        epochs=(1, 2),
        uptime_s=9.5,
        block_decode_s={1: 0.001, 2: 0.002},
        block_prefill_s={1: 0.0001},
        busy_s_total=3.25,
        mem_available_bytes=1 << 30,
        seq=17,
        link_probes=(LinkProbeResult("n2", 0.004, 1e8, 5, 65536),),
        profile_decode_s={0: 0.003},
        profile_prefill_s={0: 0.0003},
        profile_utilization=0.125,
        background_utilization=0.375,
        cached_blocks=frozenset({1, 2, 4}),
        shard_fetch_bps=2e8,
    )
    _no_field_at_its_default(snapshot)
    for nested in (*snapshot.segments, *snapshot.link_probes):
        _no_field_at_its_default(nested)
    assert telemetry_from_pb(telemetry_to_pb(snapshot)) == snapshot


def test_every_error_class_is_mapped_both_ways() -> None:
    classes = all_error_classes()
    unmapped = [c.__name__ for c in classes if c not in STATUS_BY_ERROR]
    assert not unmapped, f"add these to wire/errors.py STATUS_BY_ERROR: {unmapped}"
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), "error codes must be unique to cross the wire"
    for cls in classes:
        rebuilt = error_from_code(cls.code, "m")
        assert type(rebuilt) is cls and str(rebuilt) == "m"
        assert status_for(cls("x")) == STATUS_BY_ERROR[cls]
    assert set(ERROR_BY_STATUS) == set(grpc.StatusCode), "every gRPC status needs an edgesplit error"
    assert type(error_from_code("no-such-code", "m")) is E.EdgesplitError


@given(
    epoch=st.integers(0, 2**40),
    segments=st.lists(
        st.tuples(st.sampled_from(["a", "b", "mec-1"]), st.integers(0, 50), st.integers(1, 20)), max_size=5
    ),
)
def test_plan_canonical_bytes_roundtrip(epoch: int, segments: list[tuple[str, int, int]]) -> None:
    plan = PlanSpec(epoch, tuple(PlanSegment(n, s, s + w) for n, s, w in segments))
    raw = plan.canonical()
    assert PlanSpec.parse(raw) == plan
    assert PlanSpec.parse(raw).canonical() == raw
    assert b" " not in raw


def test_malformed_plan_is_rejected() -> None:
    with pytest.raises(PlanRejectedError):
        PlanSpec.parse(b'{"epoch": 1}')
