"""The one compute thread of a node: runs every model call, batching concurrent steps per segment.

Everything submitted in one event-loop turn reaches the thread as one unit (a ``StepMany`` of 16
sessions is one batch of 16, never 1 + 15), and steps that queue up while a batch computes are taken
together next time (micro-batching without a timer). The event loop only submits and awaits futures;
no model code ever runs on it.

Phase alignment: two sessions whose steps reach a node out of phase would otherwise take turns (each
waits out the other's whole batch, so both run at half speed) because a session's next step only
arrives one round trip after its last one finished. When the sessions of the batch that just ran are
expected back sooner than half a batch's time, the worker waits for them (at most ``align_max_s``)
and runs everything as one batch; once aligned, they arrive together and no wait is needed again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from edgesplit.errors import ServiceDeadError
from edgesplit.model.steps import SegmentOutput, SegmentStep
from edgesplit.node.segments import BatchReport, HostedSegment

T = TypeVar("T")

# Pacing: given a segment and what its batch really cost, the duration the batch must take.
Pacer = Callable[[HostedSegment, BatchReport], float]


@dataclass(frozen=True)
class StepDone:
    """One step's result as the worker measured it: compute_s includes any emulated wait."""

    output: SegmentOutput | None
    error: Exception | None
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass
class _StepItem:
    segment: HostedSegment
    step: SegmentStep
    future: asyncio.Future[StepDone]
    loop: asyncio.AbstractEventLoop
    enqueued: float


@dataclass
class _CallItem:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP = object()
_SLACK_S = 0.002  # how late an expected session may be and still be waited for


@dataclass
class _Recent:
    """When a session's last step finished here, and how long its next one usually takes to arrive."""

    finished: float
    gap_s: float | None = None


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, error: Exception | None
) -> None:
    def apply() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    loop.call_soon_threadsafe(apply)


def _resolve_all(pairs: list[tuple[asyncio.Future[Any], StepDone]]) -> None:
    for future, done in pairs:
        if not future.done():
            future.set_result(done)


class ComputeWorker:
    """Owns the compute thread; ``submit`` and ``call`` are for the event loop, the rest runs inside."""

    def __init__(
        self,
        pace: Pacer | None = None,
        max_batch: int = 64,
        name: str = "edgesplit-compute",
        align_max_s: float = 0.02,
    ) -> None:
        self._pace = pace
        self._max_batch = max_batch
        self._align_max_s = align_max_s
        self._recent: dict[str, _Recent] = {}  # sessions of the last batch (compute thread only)
        self._last_batch_s = 0.0
        self.aligned_waits = 0  # times the thread waited for an expected session (compute thread only)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._staged: list[_StepItem | _CallItem] = []  # this loop turn's submissions, under _lock
        self._pending_steps = 0
        self.units = 0  # hand-overs to the compute thread (one per loop turn with submissions)
        self.batches = 0  # forward passes run (written by the compute thread only)
        self.busy_s = 0.0  # written by the compute thread only
        self._lock = threading.Lock()
        self._dead: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Steps submitted and not yet started."""
        return self._pending_steps

    def submit(self, segment: HostedSegment, step: SegmentStep) -> asyncio.Future[StepDone]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StepDone] = loop.create_future()
        self._check_alive()
        with self._lock:
            self._pending_steps += 1
        self._stage(_StepItem(segment, step, future, loop, time.perf_counter()), loop)
        return future

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the compute thread, ordered after everything submitted before it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._check_alive()
        self._stage(_CallItem(fn, future, loop), loop)
        return future

    def _stage(self, item: _StepItem | _CallItem, loop: asyncio.AbstractEventLoop) -> None:
        """Hold ``item`` until the end of this loop turn, then hand the turn's items over together."""
        with self._lock:
            self._staged.append(item)
            first = len(self._staged) == 1
        if first:
            loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        with self._lock:
            items, self._staged = self._staged, []
        if not items:
            return
        if self._dead is not None:
            error = ServiceDeadError(f"the compute thread died: {self._dead!r}")
            for item in items:
                _resolve(item.loop, item.future, None, error)
            return
        self.units += 1
        self._queue.put(items)

    def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _check_alive(self) -> None:
        if self._dead is not None or not self._thread.is_alive():
            raise ServiceDeadError(f"the compute thread died: {self._dead!r}")

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if not isinstance(first, list):  # _STOP
                    return
                items: list[object] = list(first)
                stop = False
                while not stop and sum(isinstance(i, _StepItem) for i in items) < self._max_batch:
                    try:
                        unit = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(unit, list):
                        items.extend(unit)
                    else:
                        stop = True
                if not stop:
                    stop = self._align(items)
                self._execute(items)
                if stop:
                    return
        except BaseException as exc:  # every waiter must hear about a dead worker
            self._dead = exc
            self._fail_all(exc)
            raise

    def _align(self, items: list[object]) -> bool:
        """Wait briefly for sessions of the last batch that are due back soon; True if told to stop."""
        steps = [i for i in items if isinstance(i, _StepItem)]
        for item in steps:
            self._note_arrival(item)
        budget_s = min(self._align_max_s, 0.5 * self._last_batch_s)
        if not steps or budget_s <= 0 or len(steps) >= self._max_batch:
            return False
        present = {i.step.session_id for i in steps}
        now = time.perf_counter()
        expected = {
            sid: r.finished + r.gap_s
            for sid, r in self._recent.items()
            if sid not in present and r.gap_s is not None
        }
        # Overdue sessions have ended or moved on; later ones are not worth the wait.
        due = {sid: t for sid, t in expected.items() if now - _SLACK_S <= t <= now + budget_s}
        if not due:
            return False
        deadline = max(due.values()) + _SLACK_S
        self.aligned_waits += 1
        while due and len(steps) < self._max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                unit = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if not isinstance(unit, list):
                return True
            items.extend(unit)
            for item in unit:
                if isinstance(item, _StepItem):
                    steps.append(item)
                    self._note_arrival(item)
                    due.pop(item.step.session_id, None)
        return False

    def _note_arrival(self, item: _StepItem) -> None:
        """Learn how long after its last step finished a session's next step arrives (its round trip)."""
        recent = self._recent.get(item.step.session_id)
        if recent is None or item.enqueued < recent.finished:
            return
        gap = item.enqueued - recent.finished
        recent.gap_s = gap if recent.gap_s is None else 0.5 * recent.gap_s + 0.5 * gap

    def _fail_all(self, exc: BaseException) -> None:
        error = ServiceDeadError(f"the compute thread died: {exc!r}")
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                break
            for item in unit if isinstance(unit, list) else ():
                _resolve(item.loop, item.future, None, error)
        with self._lock:
            staged, self._staged = self._staged, []
        for item in staged:
            _resolve(item.loop, item.future, None, error)

    def _execute(self, items: list[object]) -> None:
        """Run items in order, batching consecutive steps per segment (one session per batch at most)."""
        groups: dict[int, list[_StepItem]] = {}
        for item in items:
            if isinstance(item, _CallItem):
                self._flush(groups)
                try:
                    _resolve(item.loop, item.future, item.fn(), None)
                except Exception as exc:
                    _resolve(item.loop, item.future, None, exc)
            elif isinstance(item, _StepItem):
                group = groups.setdefault(id(item.segment), [])
                if len(group) >= self._max_batch or any(
                    g.step.session_id == item.step.session_id for g in group
                ):
                    self._flush(groups)
                    group = groups.setdefault(id(item.segment), [])
                group.append(item)
        self._flush(groups)

    def _flush(self, groups: dict[int, list[_StepItem]]) -> None:
        for group in groups.values():
            self._run_batch(group)
        groups.clear()

    def _run_batch(self, group: list[_StepItem]) -> None:
        started = time.perf_counter()
        self.batches += 1
        with self._lock:
            self._pending_steps -= len(group)
        segment = group[0].segment
        try:
            report = segment.run([g.step for g in group], time.monotonic())
        except Exception as exc:  # a bug in the runner wrapper: fail this batch only
            for g in group:
                _resolve(g.loop, g.future, None, exc)
            return
        if self._pace is not None and report.compute_s > 0:
            wait_s = self._pace(segment, report) - report.compute_s
            if wait_s > 0:
                time.sleep(wait_s)  # the emulated slower device stays busy (DESIGN §3)
        finished = time.perf_counter()
        took_s = finished - started
        self.busy_s += took_s
        self._last_batch_s = took_s
        batch_sessions = {g.step.session_id for g in group}
        for sid in list(self._recent):
            if sid not in batch_sessions and finished - self._recent[sid].finished > 4 * took_s + 0.05:
                del self._recent[sid]  # not seen for several batches: ended, or elsewhere in its chain
        for sid in batch_sessions:
            old = self._recent.get(sid)
            self._recent[sid] = _Recent(finished, None if old is None else old.gap_s)
        by_loop: dict[int, list[tuple[asyncio.Future[Any], StepDone]]] = {}
        loops: dict[int, asyncio.AbstractEventLoop] = {}
        for g, result in zip(group, report.results, strict=True):
            queue_s = started - g.enqueued
            if isinstance(result, Exception):
                done = StepDone(None, result, queue_s, took_s, len(group))
            else:
                done = StepDone(result, None, queue_s, took_s, len(group))
            by_loop.setdefault(id(g.loop), []).append((g.future, done))
            loops[id(g.loop)] = g.loop
        # One callback per loop: the whole batch wakes up in the same turn (and leaves together).
        for key, pairs in by_loop.items():
            loops[key].call_soon_threadsafe(_resolve_all, pairs)
