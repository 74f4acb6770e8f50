"""Every cross-process message of the node data and control plane, as frozen dataclasses.

wire/codec.py converts them to and from protobuf; nothing else in edgesplit sees protobuf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from edgesplit.errors import PlanRejectedError
from edgesplit.model.kv_cache import KVSnapshot
from edgesplit.model.steps import SamplingParams
from edgesplit.transport.base import HopTiming, Route


@dataclass(frozen=True)
class StepEnvelope:
    """One session's step on its way to hop ``hop_index`` of ``route``.

    ``inputs`` is None only when the tensor could not be decoded (the node then reports the error
    for this session). ``budget_s`` is the time the step has left, measured by each sender.
    """

    session_id: str
    step_id: int
    route: Route
    hop_index: int
    position: int
    inputs: torch.Tensor | None
    sampling: SamplingParams
    reply_address: str
    reply_node_id: str
    timings: tuple[HopTiming, ...] = ()
    budget_s: float = 30.0
    privacy_high: bool = True
    """The request's privacy tag: an untrusted node refuses privacy-critical blocks for it."""
    continue_steps: int = 0
    """Chain-driven decoding: the last hop feeds its token back to hop 0 for this many more steps."""
    stop_token_ids: tuple[int, ...] = ()
    """Tokens after which the chain stops feeding back (the gateway's EOS ids)."""
    continue_budget_s: float = 0.0
    """The budget of each fed-back step."""
    continued: bool = False
    """This step was fed back by the chain, not sent by the gateway."""


@dataclass(frozen=True)
class StepOutcome:
    """What the gateway's sink receives for one step: a token, or an error code from a node."""

    session_id: str
    step_id: int
    token_id: int = -1
    timings: tuple[HopTiming, ...] = ()
    error_code: str = ""
    error_message: str = ""
    failed_node_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_code


@dataclass(frozen=True)
class PlanSegment:
    """Blocks [start, end) that ``node`` hosts in a plan."""

    node: str
    start: int
    end: int


@dataclass(frozen=True)
class PlanSpec:
    """The part of a plan nodes act on: its epoch and segments. ``canonical()`` is what gets signed."""

    epoch: int
    segments: tuple[PlanSegment, ...]

    def canonical(self) -> bytes:
        """Sorted-key, no-space JSON: the exact bytes a signature covers."""
        body = {
            "epoch": self.epoch,
            "segments": [{"end": s.end, "node": s.node, "start": s.start} for s in self.segments],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes) -> PlanSpec:
        """Parse canonical plan bytes; anything malformed is a PlanRejectedError."""
        try:
            body = json.loads(raw)
            segments = tuple(
                PlanSegment(node=str(s["node"]), start=int(s["start"]), end=int(s["end"]))
                for s in body["segments"]
            )
            return cls(epoch=int(body["epoch"]), segments=segments)
        except (ValueError, KeyError, TypeError) as exc:
            raise PlanRejectedError(f"malformed plan JSON: {exc}") from exc

    def for_node(self, node_id: str) -> tuple[tuple[int, int], ...]:
        """The [start, end) ranges this plan gives ``node_id``."""
        return tuple((s.start, s.end) for s in self.segments if s.node == node_id)


@dataclass(frozen=True)
class SegmentStats:
    """Measured cost of one hosted segment (EWMA of this node's own timings)."""

    start: int
    end: int
    prefill_s_per_token: float
    decode_s_per_step: float
    steps: int
    sessions: int


@dataclass(frozen=True)
class LinkProbeResult:
    """One probe round on the link to ``peer``: RTT of a small probe, bandwidth from a large one (0: none)."""

    peer: str
    rtt_s: float
    bandwidth_bps: float = 0.0
    seq: int = 0
    probe_bytes: int = 0


@dataclass(frozen=True)
class TelemetrySnapshot:
    """A node's self-report for the orchestrator's capacity profiler."""

    node_id: str
    cpu_utilization: float
    rss_bytes: int
    gpu_utilization: float
    segments: tuple[SegmentStats, ...] = ()
    activation_bytes_in: int = 0
    activation_bytes_out: int = 0
    queue_depth: int = 0
    active_sessions: int = 0
    epochs: tuple[int, ...] = ()
    uptime_s: float = 0.0
    block_decode_s: dict[int, float] = field(default_factory=dict)
    """Seconds per decode step of each hosted block: the segment's measured EWMA split by FLOPs."""
    block_prefill_s: dict[int, float] = field(default_factory=dict)
    """Seconds per prefill token of each hosted block, split the same way."""
    busy_s_total: float = 0.0
    """Compute-thread busy seconds since start; utilisation of own work = Δbusy / Δuptime."""
    mem_available_bytes: int = 0
    seq: int = 0
    link_probes: tuple[LinkProbeResult, ...] = ()
    """Recent link probe results of this node (each with its own ``seq``), oldest first."""
    profile_decode_s: dict[int, float] = field(default_factory=dict)
    """Join-time profile: seconds per decode step of every block, timed once on this node."""
    profile_prefill_s: dict[int, float] = field(default_factory=dict)
    profile_utilization: float = 0.0
    """The node's utilisation while it profiled (to divide out, as for live timings)."""
    background_utilization: float = 0.0
    """Share of the machine taken by other work (not this node's steps), 0..1."""
    cached_blocks: frozenset[int] = frozenset()
    """Blocks whose verified shard files this node holds on disk (loaded or standby)."""
    shard_fetch_bps: float = 0.0
    """Measured shard download rate in bit/s (0: no fetch yet)."""

    @property
    def loaded_blocks(self) -> frozenset[int]:
        return frozenset(b for s in self.segments for b in range(s.start, s.end))


@dataclass(frozen=True)
class EpochState:
    """A node's answer to prepare/commit/release: the epoch and the segments it now holds."""

    epoch: int
    segments: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    load_s: float = 0.0


@dataclass(frozen=True)
class KVTransfer:
    """One session's KV cache for segment [start, end): an ExportKV answer, or an ImportKV into ``epoch``."""

    start: int
    end: int
    snapshot: KVSnapshot
    epoch: int = -1
