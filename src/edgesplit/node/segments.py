"""One hosted segment: its runner, the session table that fences KV-cache positions, and its stats.

Every method except ``validate`` runs on the node's single compute thread; nothing here knows gRPC.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch

from edgesplit.errors import CapacityError, SessionError, SessionNotFoundError
from edgesplit.model.kv_cache import KVSnapshot
from edgesplit.model.steps import SegmentOutput, SegmentStep

EWMA_ALPHA = 0.2


class SegmentRunnerLike(Protocol):
    """What a node needs from ``edgesplit.model.segment.SegmentRunner``."""

    def step(self, steps: list[SegmentStep]) -> list[SegmentOutput]: ...

    def drop(self, session_id: str) -> object: ...


@dataclass(frozen=True)
class SegmentShape:
    """What inputs a segment accepts: token ids when it starts at block 0, else (T, hidden) floats."""

    start: int
    end: int
    hidden_size: int | None
    dtype: torch.dtype
    param_bytes: int = 0
    decode_share: tuple[float, ...] = ()
    """Each block's share of the segment's decode work (FLOPs); even when empty."""
    prefill_share: tuple[float, ...] = ()

    def per_block(self, seconds: float, prefill: bool) -> dict[int, float]:
        """Attribute a measured segment time to its blocks by their share of the work."""
        n = self.end - self.start
        share = self.prefill_share if prefill else self.decode_share
        if len(share) != n or sum(share) <= 0:
            share = tuple(1.0 / n for _ in range(n))
        return {self.start + i: seconds * w for i, w in enumerate(share)}


@dataclass
class _Session:
    length: int
    last_used: float


@dataclass
class SegmentCounters:
    """EWMA of measured compute: seconds per prefill token and per decode batch."""

    prefill_s_per_token: float = 0.0
    decode_s_per_step: float = 0.0
    steps: int = 0

    def observe(self, compute_s: float, prefill_tokens: int, decode_rows: int) -> None:
        self.steps += prefill_tokens > 0 or decode_rows > 0
        if prefill_tokens:
            sample = compute_s / prefill_tokens
            old = self.prefill_s_per_token
            self.prefill_s_per_token = sample if old == 0 else old + EWMA_ALPHA * (sample - old)
        elif decode_rows:
            old = self.decode_s_per_step
            self.decode_s_per_step = compute_s if old == 0 else old + EWMA_ALPHA * (compute_s - old)


@dataclass
class BatchReport:
    """One executed batch: per-step output or error, and what it cost."""

    results: list[SegmentOutput | Exception]
    compute_s: float
    prefill_tokens: int
    decode_rows: int


@dataclass
class HostedSegment:
    """A runner plus the per-session positions its KV cache holds (checked before every step)."""

    shape: SegmentShape
    runner: SegmentRunnerLike
    max_sessions: int = 256
    max_step_tokens: int = 8192
    sessions: dict[str, _Session] = field(default_factory=dict)
    counters: SegmentCounters = field(default_factory=SegmentCounters)

    def validate(self, inputs: torch.Tensor) -> None:
        """Reject a tensor that cannot be this segment's input (cheap; safe on any thread)."""
        s = self.shape
        where = f"blocks {s.start}:{s.end}"
        if s.start == 0:
            if inputs.dtype not in (torch.int64, torch.int32) or inputs.dim() != 1:
                raise SessionError(
                    f"{where} take token ids (T,) int64; got {tuple(inputs.shape)} {inputs.dtype}"
                )
        else:
            if inputs.dtype != s.dtype:
                raise SessionError(f"{where} take {s.dtype} hidden states; got {inputs.dtype}")
            if inputs.dim() != 2 or (s.hidden_size is not None and inputs.shape[1] != s.hidden_size):
                raise SessionError(
                    f"{where} take hidden states (T, {s.hidden_size}); got {tuple(inputs.shape)}"
                )
        tokens = inputs.shape[0]
        if not 1 <= tokens <= self.max_step_tokens:
            raise SessionError(f"a step carries 1..{self.max_step_tokens} tokens; got {tokens}")

    def run(self, steps: list[SegmentStep], now: float) -> BatchReport:
        """Fence positions, run the admitted steps as one batch, record new cache lengths."""
        results: list[SegmentOutput | Exception | None] = [None] * len(steps)
        admitted: list[int] = []
        for i, step in enumerate(steps):
            known = self.sessions.get(step.session_id)
            if step.position == 0:
                if known is not None:
                    self.runner.drop(step.session_id)  # a re-prefill replaces the old cache
                    del self.sessions[step.session_id]
                elif len(self.sessions) >= self.max_sessions:
                    results[i] = CapacityError(
                        f"blocks {self.shape.start}:{self.shape.end} already hold "
                        f"{self.max_sessions} sessions"
                    )
                    continue
            elif known is None or step.position > known.length:
                held = "none" if known is None else str(known.length)
                results[i] = SessionNotFoundError(
                    f"session {step.session_id} at position {step.position} but blocks "
                    f"{self.shape.start}:{self.shape.end} hold {held} tokens; re-prefill from position 0"
                )
                continue
            admitted.append(i)
        batch = [steps[i] for i in admitted]
        prefill_tokens = sum(s.inputs.shape[0] for s in batch if s.position == 0 or s.inputs.shape[0] > 1)
        decode_rows = len(batch) - sum(1 for s in batch if s.position == 0 or s.inputs.shape[0] > 1)
        compute_s = 0.0
        if batch:
            t0 = time.perf_counter()
            try:
                outputs = self.runner.step(batch)
            except Exception as exc:
                # The runner failed mid-batch: its caches for these sessions are suspect.
                for i in admitted:
                    self._forget(steps[i].session_id)
                    results[i] = exc if isinstance(exc, SessionError) else SessionError(f"step failed: {exc}")
            else:
                compute_s = time.perf_counter() - t0
                for i, out in zip(admitted, outputs, strict=True):
                    step = steps[i]
                    error = getattr(out, "error", None)  # the runner fails one session, not the batch
                    if error is not None:
                        self._forget(step.session_id)
                        results[i] = error
                        continue
                    self.sessions[step.session_id] = _Session(step.position + step.inputs.shape[0], now)
                    results[i] = out
                self.counters.observe(compute_s, prefill_tokens, decode_rows)
        assert all(r is not None for r in results)
        return BatchReport([r for r in results if r is not None], compute_s, prefill_tokens, decode_rows)

    def _forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        with contextlib.suppress(Exception):
            self.runner.drop(session_id)

    def drop(self, session_id: str) -> bool:
        """Free one session's cache; True if it was held."""
        held = session_id in self.sessions
        self._forget(session_id)
        return held

    def export_kv(self, session_id: str) -> KVSnapshot:
        """The session's K/V for this segment's layers (the runner must support KV transfer)."""
        known = self.sessions.get(session_id)
        export = getattr(self.runner, "export_kv", None)
        if known is None or export is None:
            raise SessionNotFoundError(
                f"blocks {self.shape.start}:{self.shape.end} hold no exportable session {session_id}"
            )
        snap: KVSnapshot = export(session_id)
        return snap

    def import_kv(self, snap: KVSnapshot, now: float) -> None:
        """Install a transferred session; its next step must come at position ``snap.length``."""
        install = getattr(self.runner, "import_kv", None)
        if install is None:
            raise SessionError(f"blocks {self.shape.start}:{self.shape.end} cannot import KV caches")
        if snap.session_id not in self.sessions and len(self.sessions) >= self.max_sessions:
            raise CapacityError(
                f"blocks {self.shape.start}:{self.shape.end} already hold {self.max_sessions} sessions"
            )
        install(snap)
        self.sessions[snap.session_id] = _Session(snap.length, now)

    def drop_all(self) -> int:
        """Free every session (the segment is being unloaded); returns how many."""
        held = list(self.sessions)
        for sid in held:
            self._forget(sid)
        return len(held)

    def reap(self, idle_s: float, now: float) -> list[str]:
        """Drop sessions idle for longer than ``idle_s``; returns their ids."""
        stale = [sid for sid, s in self.sessions.items() if now - s.last_used > idle_s]
        for sid in stale:
            self._forget(sid)
        return stale
