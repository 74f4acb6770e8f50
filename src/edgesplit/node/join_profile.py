"""Join-time compute profile: the node times each block of the model, as it would serve it.

Without it, a node that has never hosted a segment has no measured speed and the planner can only
guess. Each block is loaded alone, given a short prefill and a few decode steps on the node's own
compute thread (so emulated speed and load apply exactly as for real traffic), timed, and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from edgesplit.model.steps import SegmentStep
from edgesplit.node.loading import SegmentSource
from edgesplit.node.segments import HostedSegment, SegmentRunnerLike, SegmentShape
from edgesplit.node.worker import ComputeWorker, StepDone

log = logging.getLogger(__name__)

PREFILL_TOKENS = 8
DECODE_STEPS = 5
"""Decode steps timed per block; the fastest counts (start-up contention from other processes on the
machine only ever adds time, and nodes tend to join, and profile, all at once)."""


@dataclass(frozen=True)
class JoinProfile:
    """Seconds per decode step and per prefill token of each block, and the utilisation meanwhile."""

    decode_s: dict[int, float] = field(default_factory=dict)
    prefill_s: dict[int, float] = field(default_factory=dict)
    utilization: float = 0.0


def _inputs(segment: HostedSegment, tokens: int) -> torch.Tensor:
    shape = segment.shape
    if shape.start == 0:
        return torch.arange(1, tokens + 1, dtype=torch.int64)
    return torch.zeros(tokens, shape.hidden_size or 1, dtype=shape.dtype)


async def profile_blocks(
    num_blocks: int,
    source: SegmentSource,
    worker: ComputeWorker,
    make_segment: Callable[[SegmentRunnerLike, SegmentShape], HostedSegment],
    utilization: float,
) -> JoinProfile:
    """Time blocks 0..num_blocks-1 one at a time; a block that fails to load or run is left out.
    ``utilization`` is the node's load as its telemetry reports it, so the profiler can divide it out."""
    decode: dict[int, float] = {}
    prefill: dict[int, float] = {}
    for block in range(num_blocks):
        try:
            runner, shape = await asyncio.to_thread(source.load, block, block + 1)
            segment = make_segment(runner, shape)
            session = f"join-profile-{block}"
            first: StepDone = await worker.submit(
                segment, SegmentStep(session, _inputs(segment, PREFILL_TOKENS), 0)
            )
            if first.error is not None:
                raise first.error
            times = []
            for i in range(DECODE_STEPS):
                step = SegmentStep(session, _inputs(segment, 1), PREFILL_TOKENS + i)
                done = await worker.submit(segment, step)
                if done.error is not None:
                    raise done.error
                times.append(done.compute_s)
            await worker.call(segment.drop_all)
        except Exception as exc:  # a profile is a hint; serving must not depend on it
            log.warning("join profile of block %d failed: %s", block, exc)
            continue
        decode[block] = min(times)
        prefill[block] = first.compute_s / PREFILL_TOKENS
    return JoinProfile(decode, prefill, utilization)
