"""SegmentRunner: executes blocks [start, end) of a BlockModel for many sessions, batched.

Owns the segment's per-session KV caches (only its own layers) and sampling generators.
Knows nothing about sockets, threads or clocks; callers serialise access to one runner per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from edgesplit.errors import SegmentSpecError, SessionError, SessionNotFoundError
from edgesplit.model.kv_cache import BatchCache, KVSnapshot, SessionState, restore, snapshot
from edgesplit.model.loader import BlockModel
from edgesplit.model.sampling import new_generator, sample_token
from edgesplit.model.steps import SegmentOutput, SegmentStep

MAX_PAD_FRACTION = 0.25
"""Multi-token steps share a forward pass only while padding wastes at most this share of it."""


class SegmentRunner:
    """Runs prefill and decode steps of blocks [start, end) for concurrent sessions.

    Input per step: token ids (T,) when ``start == 0``, else hidden states (T, D). Output: hidden
    states (T, D), or — when the segment ends with the head — the token sampled from the last
    position (plus logits (T, V) on request). Steps of different sessions given to one ``step`` call
    run as one forward pass: all decode steps (T = 1) together, multi-token steps grouped by length.
    """

    def __init__(self, block_model: BlockModel, start: int, end: int) -> None:
        if not 0 <= start < end <= block_model.num_blocks:
            raise SegmentSpecError(f"segment {start}:{end} is out of range 0:{block_model.num_blocks}")
        absent = [i for i in range(start, end) if i not in block_model.materialized]
        if absent:
            raise SegmentSpecError(f"segment {start}:{end} needs blocks {absent} that were not loaded")
        self.block_model = block_model
        self.start = start
        self.end = end
        self.adapter = block_model.adapter
        self.dtype = block_model.dtype
        n_layers = block_model.num_layers
        self.layer_indices = range(max(start, 1) - 1, min(end, n_layers + 1) - 1)
        self.has_embedding = start == 0
        self.has_head = end == n_layers + 2
        self._sessions: dict[str, SessionState] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SegmentRunner({self.start}:{self.end}, sessions={len(self._sessions)})"

    # --- session table --------------------------------------------------------------------------

    def session_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._sessions)

    def session_length(self, session_id: str) -> int:
        """Tokens committed for ``session_id``; SessionNotFoundError when unknown."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                raise SessionNotFoundError(f"segment {self.start}:{self.end} holds no session {session_id!r}")
            return state.length

    def drop(self, session_id: str) -> bool:
        """Free a session's caches; False when it was not held."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def kv_bytes(self) -> int:
        with self._lock:
            return sum(s.kv_bytes() for s in self._sessions.values())

    def export_kv(self, session_id: str) -> KVSnapshot:
        """A copy of the session's committed K/V for this segment's layers (KV-cache transfer)."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                raise SessionNotFoundError(f"segment {self.start}:{self.end} holds no session {session_id!r}")
            try:
                return snapshot(state, self.layer_indices)
            except ValueError as exc:
                raise SessionError(f"segment {self.start}:{self.end}: {exc}") from exc

    def import_kv(self, snap: KVSnapshot) -> None:
        """Install a session from transferred K/V; its next step continues at ``snap.length``."""
        with self._lock:
            try:
                state = restore(snap, self.layer_indices, self.dtype)
            except ValueError as exc:
                raise SessionError(f"segment {self.start}:{self.end}: {exc}") from exc
            self._sessions[snap.session_id] = state

    # --- stepping -------------------------------------------------------------------------------

    def step(self, steps: Sequence[SegmentStep]) -> list[SegmentOutput]:
        """Run one step for each given session; outputs align with ``steps``.

        A step whose input is invalid, whose session is unknown or whose ``position`` is ahead of
        the cache gets an output with ``error`` set; the others run. ``position`` below the cache
        length rolls the session back to it (a replayed step after a downstream failure).
        """
        with self._lock, torch.inference_mode():
            outputs: list[SegmentOutput | None] = [None] * len(steps)
            runnable: list[tuple[int, SegmentStep, torch.Tensor, SessionState]] = []
            seen: set[str] = set()
            for i, step in enumerate(steps):
                try:
                    if step.session_id in seen:
                        raise SessionError(f"session {step.session_id!r} appears twice in one batch")
                    seen.add(step.session_id)
                    inputs = self._validate(step)
                    runnable.append((i, step, inputs, self._session_for(step, len(inputs))))
                except SessionError as exc:
                    outputs[i] = SegmentOutput(step.session_id, error=exc)
            for group in _group_by_length(runnable):
                for i, output in self._run_isolated(group):
                    outputs[i] = output
            return [o for o in outputs if o is not None]

    def _validate(self, step: SegmentStep) -> torch.Tensor:
        """The step's input as a tensor ready to run; SessionError naming what is wrong."""
        where = f"session {step.session_id!r} at segment {self.start}:{self.end}"
        x = step.inputs
        if not isinstance(x, torch.Tensor):
            raise SessionError(f"{where}: inputs must be a tensor, got {type(x).__name__}")
        if self.has_embedding:
            if x.dim() != 1 or x.shape[0] == 0 or x.dtype.is_floating_point or x.dtype == torch.bool:
                raise SessionError(
                    f"{where}: expected token ids of shape (T,) and an integer dtype, "
                    f"got shape {tuple(x.shape)} {x.dtype}"
                )
            vocab = self.block_model.vocab_size
            if int(x.min()) < 0 or int(x.max()) >= vocab:
                raise SessionError(
                    f"{where}: token ids must lie in 0:{vocab}, got {int(x.min())}..{int(x.max())}"
                )
            x = x.to(torch.long)
        else:
            hidden = self.block_model.hidden_size
            if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != hidden or not x.dtype.is_floating_point:
                raise SessionError(
                    f"{where}: expected hidden states of shape (T, {hidden}) and a float dtype, "
                    f"got shape {tuple(x.shape)} {x.dtype}"
                )
            if not bool(torch.isfinite(x).all()):
                raise SessionError(f"{where}: hidden states contain NaN or infinity")
            x = x.to(self.dtype)
        if step.position < 0:
            raise SessionError(f"{where}: position must be >= 0, got {step.position}")
        limit = self.adapter.max_positions()
        if limit is not None and step.position + x.shape[0] > limit:
            raise SessionError(
                f"{where}: {step.position} + {x.shape[0]} tokens exceed the model's {limit} positions"
            )
        return x

    def _session_for(self, step: SegmentStep, new_tokens: int) -> SessionState:
        """The session's state, created by a prefill (position 0) or rolled back to ``position``."""
        state = self._sessions.get(step.session_id)
        if step.position == 0:
            state = SessionState(step.session_id)
            self._sessions[step.session_id] = state
        elif state is None:
            raise SessionNotFoundError(
                f"segment {self.start}:{self.end} holds no session {step.session_id!r} "
                f"(step at position {step.position}); re-prefill from the history"
            )
        elif step.position > state.length:
            raise SessionNotFoundError(
                f"session {step.session_id!r} at segment {self.start}:{self.end}: step at position "
                f"{step.position} but the cache holds {state.length} tokens; re-prefill from the history"
            )
        state.length = step.position
        if self.has_head and not step.sampling.greedy and state.generator is None:
            state.generator = new_generator(step.sampling)
        return state

    def _run_isolated(
        self, group: list[tuple[int, SegmentStep, torch.Tensor, SessionState]]
    ) -> list[tuple[int, SegmentOutput]]:
        """Run a group as one forward; if it fails, run each step alone so only the culprit fails."""
        try:
            return self._forward(group)
        except Exception as exc:
            if len(group) == 1:
                i, step, _, _ = group[0]
                error = SessionError(f"session {step.session_id!r} at segment {self.start}:{self.end}: {exc}")
                return [(i, SegmentOutput(step.session_id, error=error))]
            return [out for member in group for out in self._run_isolated([member])]

    def _forward(
        self, group: list[tuple[int, SegmentStep, torch.Tensor, SessionState]]
    ) -> list[tuple[int, SegmentOutput]]:
        """One batched forward pass through the segment's blocks; commits the caches on success."""
        steps = [g[1] for g in group]
        inputs = [g[2] for g in group]
        new_lengths = [len(x) for x in inputs]
        t_max = max(new_lengths)
        cache = BatchCache([g[3] for g in group], new_lengths)
        positions = cache.query_positions(t_max, inputs[0].device)  # (B, T_max)
        if self.has_embedding:
            ids = torch.stack([torch.cat([x, x[-1:].expand(t_max - len(x))]) for x in inputs])
            hidden = self.adapter.embed(ids, positions)  # (B, T_max, D)
        elif len(inputs) == 1:
            hidden = inputs[0].unsqueeze(0)
        else:
            hidden = inputs[0].new_zeros(len(inputs), t_max, inputs[0].shape[1])
            for row, x in enumerate(inputs):
                hidden[row, : len(x)] = x
        if len(self.layer_indices):
            rotary = self.adapter.position_embeddings(hidden, positions)
            masks: dict[int | None, torch.Tensor | None] = {}
            for layer in self.layer_indices:
                window = self.adapter.sliding_window(layer)
                if window not in masks:
                    masks[window] = cache.attention_mask(positions, window)
                hidden = self.adapter.run_layer(layer, hidden, masks[window], positions, rotary, cache)
        outputs = self._outputs(steps, hidden, new_lengths, [g[3] for g in group])
        cache.commit()
        return [(g[0], out) for g, out in zip(group, outputs, strict=True)]

    def _outputs(
        self,
        steps: list[SegmentStep],
        hidden: torch.Tensor,
        new_lengths: list[int],
        states: list[SessionState],
    ) -> list[SegmentOutput]:
        if not self.has_head:
            return [
                SegmentOutput(s.session_id, hidden=hidden[row, :n])
                for row, (s, n) in enumerate(zip(steps, new_lengths, strict=True))
            ]
        all_logits: torch.Tensor | None = None
        if any(s.want_logits for s in steps):
            all_logits = self.adapter.head_logits(hidden)  # (B, T_max, V)
            last = torch.stack([all_logits[row, n - 1] for row, n in enumerate(new_lengths)])
        else:
            rows = torch.arange(len(steps))
            last_hidden = hidden[rows, torch.tensor(new_lengths) - 1].unsqueeze(1)  # (B, 1, D)
            last = self.adapter.head_logits(last_hidden)[:, 0]  # (B, V)
        outputs = []
        for row, (s, n, state) in enumerate(zip(steps, new_lengths, states, strict=True)):
            token = sample_token(last[row], s.sampling, state.generator)
            logits = all_logits[row, :n] if s.want_logits and all_logits is not None else None
            outputs.append(SegmentOutput(s.session_id, token_id=token, logits=logits))
        return outputs


def _group_by_length(
    runnable: list[tuple[int, SegmentStep, torch.Tensor, SessionState]],
) -> list[list[tuple[int, SegmentStep, torch.Tensor, SessionState]]]:
    """Decode steps in one group; multi-token steps in groups of similar length (longest first)."""
    decode = [r for r in runnable if len(r[2]) == 1]
    longer = sorted((r for r in runnable if len(r[2]) > 1), key=lambda r: -len(r[2]))
    groups = [decode] if decode else []
    current: list[tuple[int, SegmentStep, torch.Tensor, SessionState]] = []
    for r in longer:
        if current:
            t_max = len(current[0][2])
            tokens = sum(len(c[2]) for c in current) + len(r[2])
            if 1 - tokens / (t_max * (len(current) + 1)) > MAX_PAD_FRACTION:
                groups.append(current)
                current = []
        current.append(r)
    if current:
        groups.append(current)
    return groups
