"""SimPy resources of the simulated cluster: a node's compute thread (batched steps, a queue) and the
links (serialised bytes, then propagation). Times come from the truth; queueing comes from SimPy.

Mirrors the live node agent: one compute worker per node, decode steps of the same segment that wait
together run as one batch (a profiled decode step costs the same whatever its batch size), prefills
run alone; a killed node fails everything it holds and forgets its segments.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from edgesplit.sim.sensors import NodeInterval
from edgesplit.sim.truth import TrueCluster

Segment = tuple[int, int]


@dataclass
class _Job:
    epoch: int
    segment: Segment
    prefill_tokens: int
    done: simpy.Event
    """Succeeds with True (ran) or False (the node failed it)."""


class SimNode:
    """One node agent: the segments it holds per epoch, its compute queue and what it measured."""

    def __init__(self, env: simpy.Environment, node_id: str, truth: TrueCluster) -> None:
        self.env = env
        self.node_id = node_id
        self.truth = truth
        self.epochs: dict[int, tuple[Segment, ...]] = {}
        self.generation = 0
        """Grows on every kill: a step started before it belongs to a dead process."""
        self.busy_total_s = 0.0
        self.interval = NodeInterval()
        self.decode_s: dict[Segment, float] = {}
        """Per hosted segment, the last decode step's compute time (what the node's counters hold)."""
        self.prefill_s_per_token: dict[Segment, float] = {}
        self._queue: list[_Job] = []
        self._running: list[_Job] = []
        self._wake: simpy.Event | None = None
        env.process(self._worker())

    @property
    def up(self) -> bool:
        return self.truth.up(self.node_id)

    def holds(self) -> frozenset[int]:
        return frozenset(b for segs in self.epochs.values() for s, e in segs for b in range(s, e))

    def submit(self, epoch: int, segment: Segment, prefill_tokens: int) -> simpy.Event:
        """Queue one step; the returned event's value says whether it ran."""
        done = self.env.event()
        if not self.up or segment not in self.epochs.get(epoch, ()):
            done.succeed(False)  # connection refused, or "segment not loaded for this epoch"
            return done
        self._queue.append(_Job(epoch, segment, prefill_tokens, done))
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        return done

    def _worker(self) -> Generator[simpy.Event, Any, None]:
        while True:
            if not self._queue:
                self._wake = self.env.event()
                yield self._wake
                continue
            head = self._queue.pop(0)
            batch = [head]
            if head.prefill_tokens == 0:
                same = [j for j in self._queue if j.segment == head.segment and j.prefill_tokens == 0]
                batch += same
                self._queue = [j for j in self._queue if j not in same]
            self._running = batch
            generation = self.generation
            start, end = head.segment
            seconds = self.truth.compute_s(self.node_id, start, end, head.prefill_tokens)
            yield self.env.timeout(seconds)
            self._running = []
            if generation != self.generation:
                continue  # killed meanwhile: kill() already failed the batch
            self.busy_total_s += seconds
            self.interval.busy_s += seconds
            if head.prefill_tokens:
                self.prefill_s_per_token[head.segment] = seconds / head.prefill_tokens
            else:
                self.decode_s[head.segment] = seconds
            for job in batch:
                job.done.succeed(True)

    def kill(self) -> None:
        """SIGKILL: queued and running steps fail, every segment and measurement is gone."""
        self.generation += 1
        for job in [*self._running, *self._queue]:
            if not job.done.triggered:
                job.done.succeed(False)
        self._queue, self._running = [], []
        self.interval = NodeInterval()
        self.epochs.clear()
        self.decode_s.clear()
        self.prefill_s_per_token.clear()

    def release(self, epoch: int) -> None:
        self.epochs.pop(epoch, None)
        live = {s for segs in self.epochs.values() for s in segs}
        self.decode_s = {s: v for s, v in self.decode_s.items() if s in live}
        self.prefill_s_per_token = {s: v for s, v in self.prefill_s_per_token.items() if s in live}

    def take_interval(self, sessions: int) -> NodeInterval:
        """This interval's record (true values), and start the next one."""
        record = self.interval
        record.decode_s_per_step = dict(self.decode_s)
        record.prefill_s_per_token = dict(self.prefill_s_per_token)
        record.queue_depth = len(self._queue)
        record.sessions = sessions
        record.epoch = max(self.epochs, default=0)
        record.loaded_blocks = self.holds()
        self.interval = NodeInterval()
        return record


class Links:
    """Every directed link as a one-at-a-time resource: bytes are serialised at the true bandwidth of
    the moment they start, then take half the true RTT to arrive."""

    def __init__(self, env: simpy.Environment, truth: TrueCluster) -> None:
        self.env = env
        self.truth = truth
        self._wires: dict[tuple[str, str], simpy.Resource] = {}

    def send(self, a: str, b: str, nbytes: int) -> Generator[simpy.Event, Any, float]:
        """Move ``nbytes`` from a to b; returns the seconds spent getting onto the link (incl. queueing)."""
        if a == b:
            return 0.0
        wire = self._wires.get((a, b))
        if wire is None:
            wire = self._wires[(a, b)] = simpy.Resource(self.env, capacity=1)
        started = self.env.now
        with wire.request() as turn:
            yield turn
            yield self.env.timeout(nbytes * 8 / self.truth.link(a, b).bandwidth_bps)
        on_link = self.env.now - started
        yield self.env.timeout(self.truth.link(a, b).rtt_s / 2)
        return on_link
