"""Two sessions that reach a node out of phase end up in one batch instead of taking turns."""

from __future__ import annotations

import asyncio

import pytest
import torch
from fakes import FakeRunner

from edgesplit.model.steps import SegmentStep
from edgesplit.node.segments import HostedSegment, SegmentShape
from edgesplit.node.worker import ComputeWorker

pytestmark = pytest.mark.anyio

N_BLOCKS = 4
STEP_S = 0.03  # one batch on the node, whatever its size (a memory-bound decode step)
ROUND_TRIP_S = 0.004  # from a step's result to the session's next step reaching the node
STEPS = 14


async def _session(
    worker: ComputeWorker, segment: HostedSegment, sid: str, start_after_s: float
) -> list[int]:
    """Decode ``STEPS`` steps one after the other, each a round trip after the last; batch sizes seen."""
    await asyncio.sleep(start_after_s)
    sizes = []
    for position in range(STEPS):
        done = await asyncio.wait_for(
            worker.submit(segment, SegmentStep(sid, torch.tensor([position + 1]), position)), 10
        )
        assert done.error is None
        sizes.append(done.batch_size)
        await asyncio.sleep(ROUND_TRIP_S)
    return sizes


async def _two_sessions_out_of_phase(align_max_s: float) -> tuple[list[int], list[int], int]:
    runner = FakeRunner(0, N_BLOCKS, N_BLOCKS + 1, delay_s=STEP_S)
    segment = HostedSegment(SegmentShape(0, N_BLOCKS, 8, torch.float32), runner)
    worker = ComputeWorker(align_max_s=align_max_s)
    try:
        # B's first step lands in the middle of A's: without alignment they alternate forever.
        a, b = await asyncio.gather(
            _session(worker, segment, "a", 0.0), _session(worker, segment, "b", STEP_S / 2)
        )
    finally:
        worker.close()
    return a, b, worker.aligned_waits


async def test_out_of_phase_sessions_are_aligned_into_one_batch() -> None:
    a, b, waits = await _two_sessions_out_of_phase(align_max_s=0.02)
    # After a few steps to learn the round trip, both sessions travel together.
    assert sum(size == 2 for size in a[STEPS // 2 :]) >= STEPS // 2 - 1, a
    assert sum(size == 2 for size in b[STEPS // 2 :]) >= STEPS // 2 - 1, b
    assert waits >= 1


async def test_without_alignment_the_same_sessions_take_turns() -> None:
    """The control: the wait is what aligns them (batch of 2 is rare when the worker never waits)."""
    a, b, waits = await _two_sessions_out_of_phase(align_max_s=0.0)
    assert waits == 0
    assert sum(size == 2 for size in a + b) <= STEPS // 2, (a, b)


async def test_a_lone_session_never_waits() -> None:
    runner = FakeRunner(0, N_BLOCKS, N_BLOCKS + 1, delay_s=STEP_S)
    segment = HostedSegment(SegmentShape(0, N_BLOCKS, 8, torch.float32), runner)
    worker = ComputeWorker(align_max_s=0.02)
    try:
        sizes = await _session(worker, segment, "solo", 0.0)
    finally:
        worker.close()
    assert sizes == [1] * STEPS
    assert worker.aligned_waits == 0
