"""In-process SegmentClient: runs a route's segments in this process on one compute thread.

Used by tests, the simulator and single-process generation; same batching and session fencing as a
node (node/worker.py, node/segments.py), no sockets and no emulation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import torch

from edgesplit.errors import SegmentSpecError, SessionError
from edgesplit.model.steps import SegmentStep
from edgesplit.node.segments import HostedSegment, SegmentRunnerLike, SegmentShape
from edgesplit.node.worker import ComputeWorker
from edgesplit.transport.base import ChainResult, ChainStep, HopTiming, Route


class InprocSegmentClient:
    """Runs each hop's blocks [start, end) with the runner registered for exactly that range."""

    def __init__(self, runners: Mapping[tuple[int, int], SegmentRunnerLike]) -> None:
        self._segments = {
            key: HostedSegment(SegmentShape(key[0], key[1], None, torch.float32), runner)
            for key, runner in runners.items()
        }
        self._worker = ComputeWorker(name="edgesplit-inproc")

    @classmethod
    def from_model(cls, block_model: Any, segments: Iterable[tuple[int, int]]) -> InprocSegmentClient:
        """Runners for ``segments`` over one loaded BlockModel (edgesplit.model.loader), sharing weights."""
        from edgesplit.model.segment import SegmentRunner

        return cls({(s, e): SegmentRunner(block_model, s, e) for s, e in segments})

    def _segment(self, start: int, end: int) -> HostedSegment:
        segment = self._segments.get((start, end))
        if segment is None:
            held = ", ".join(f"{s}:{e}" for s, e in sorted(self._segments))
            raise SegmentSpecError(f"no runner for blocks {start}:{end}; this client holds {held}")
        return segment

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        """Each hop in order; a missing cache anywhere raises SessionNotFoundError (re-prefill)."""
        inputs = torch.tensor(step.token_ids, dtype=torch.int64)
        timings: list[HopTiming] = []
        for index, hop in enumerate(route.hops):
            last = index == len(route.hops) - 1
            seg_step = SegmentStep(step.session_id, inputs, step.position, step.sampling)
            done = await self._worker.submit(self._segment(hop.start, hop.end), seg_step)
            if done.error is not None:
                raise done.error
            assert done.output is not None
            timings.append(HopTiming(hop.node_id, done.queue_s, done.compute_s, 0.0))
            if last:
                if done.output.token_id is None:
                    raise SessionError(f"the last hop (blocks {hop.start}:{hop.end}) returned no token")
                return ChainResult(step.session_id, int(done.output.token_id), tuple(timings))
            if done.output.hidden is None:
                raise SessionError(
                    f"hop {hop.node_id} (blocks {hop.start}:{hop.end}) returned no hidden states"
                )
            inputs = done.output.hidden
        raise SegmentSpecError("a route needs at least one hop")

    async def end_session(self, route: Route, session_id: str) -> None:
        for hop in route.hops:
            segment = self._segments.get((hop.start, hop.end))
            if segment is not None:
                await self._worker.call(partial(segment.drop, session_id))

    def held_sessions(self) -> int:
        """Sessions with a cache in any segment (for leak checks)."""
        return sum(len(s.sessions) for s in self._segments.values())

    async def close(self) -> None:
        self._worker.close()
