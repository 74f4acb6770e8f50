"""Per-session KV caches for one segment's layers, and the batch view handed to HF decoder layers.

A session owns one growable (heads, capacity, head_dim) buffer pair per layer; a step appends in
place (no whole-cache copy for a lone session). Lengths advance only when a step commits, so a
failed or replayed step never leaves half-written state visible. Knows nothing about sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class LayerKV:
    """One layer's keys and values for one session: (kv_heads, capacity, head_dim) each."""

    keys: torch.Tensor
    values: torch.Tensor

    def reserve(self, needed: int, keep: int) -> None:
        """Grow to hold ``needed`` positions (×1.5 amortised), keeping the first ``keep``."""
        capacity = self.keys.shape[1]
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity + capacity // 2, 16)
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = old.new_empty(old.shape[0], new_capacity, old.shape[2])
            grown[:, :keep] = old[:, :keep]
            setattr(self, name, grown)


@dataclass
class SessionState:
    """Everything a segment keeps for one session between steps."""

    session_id: str
    length: int = 0
    """Tokens this segment has committed for the session (its KV caches hold exactly this many)."""
    layers: dict[int, LayerKV] = field(default_factory=dict)
    """Global layer index → cache; only the segment's own layers appear."""
    generator: torch.Generator | None = None
    """Seeded sampling generator, for segments that end with the head."""

    def kv_bytes(self) -> int:
        """Bytes of KV buffers held (capacity, not just length)."""
        return sum(kv.keys.nbytes + kv.values.nbytes for kv in self.layers.values())


class BatchCache:
    """The ``past_key_values`` object one batched forward passes to every layer of the segment.

    Row b of the batch holds session b's committed keys (``past_lengths[b]``), then its new keys
    (``new_lengths[b]``), then padding; ``update`` writes the new keys into the session buffers and
    returns (B, kv_heads, L, head_dim) with L = max(past + new). The attention mask (see
    ``attention_mask``) hides padding, the future and what lies outside a sliding window.
    """

    def __init__(self, sessions: Sequence[SessionState], new_lengths: Sequence[int]) -> None:
        self.sessions = list(sessions)
        self.past_lengths = [s.length for s in self.sessions]
        self.new_lengths = list(new_lengths)
        self.total = max(p + n for p, n in zip(self.past_lengths, self.new_lengths, strict=True))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(self.past_lengths)

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *_args: object,
        **_kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new K/V (B, kv_heads, T_max, head_dim); return the full per-row K/V."""
        views: list[tuple[torch.Tensor, torch.Tensor]] = []
        for row, session in enumerate(self.sessions):
            past, new = self.past_lengths[row], self.new_lengths[row]
            kv = session.layers.get(layer_idx)
            if kv is None:
                shape = (key_states.shape[1], 0, key_states.shape[3])
                kv = LayerKV(key_states.new_empty(shape), value_states.new_empty(shape))
                session.layers[layer_idx] = kv
            kv.reserve(past + new, keep=past)
            kv.keys[:, past : past + new] = key_states[row, :, :new]
            kv.values[:, past : past + new] = value_states[row, :, :new]
            views.append((kv.keys[:, : past + new], kv.values[:, : past + new]))
        if len(views) == 1:
            keys, values = views[0]
            return keys.unsqueeze(0), values.unsqueeze(0)
        batch, heads, _, dim = key_states.shape
        keys = key_states.new_zeros(batch, heads, self.total, dim)
        values = value_states.new_zeros(batch, heads, self.total, dim)
        for row, (k, v) in enumerate(views):
            keys[row, :, : k.shape[1]] = k
            values[row, :, : v.shape[1]] = v
        return keys, values

    def query_positions(self, t_max: int, device: torch.device) -> torch.Tensor:
        """Absolute position of each query slot (B, T_max); padding repeats the row's last position."""
        offsets = torch.arange(t_max, device=device)
        rows = [
            past + torch.clamp(offsets, max=new - 1)
            for past, new in zip(self.past_lengths, self.new_lengths, strict=True)
        ]
        return torch.stack(rows)

    def attention_mask(self, positions: torch.Tensor, window: int | None) -> torch.Tensor | None:
        """Boolean (B, 1, T_max, L) mask, True = attend; None when plain causal attention is exact.

        Key slot j of a row is absolute position j, so a query at position q sees j <= q and, with
        a sliding window w, j > q - w (HF's convention). Padding queries repeat the last real query,
        so no row is fully masked (that would give NaN).
        """
        t_max = positions.shape[1]
        windowed = window is not None and self.total > window
        if len(self.sessions) == 1 and not windowed and (self.past_lengths[0] == 0 or t_max == 1):
            return None
        keys = torch.arange(self.total, device=positions.device).view(1, 1, -1)
        query = positions.unsqueeze(-1)  # (B, T_max, 1)
        mask = keys <= query
        if windowed and window is not None:
            mask &= keys > query - window
        return mask.unsqueeze(1)

    def commit(self) -> None:
        """Make the appended positions part of each session (called once the forward succeeded)."""
        for session, new in zip(self.sessions, self.new_lengths, strict=True):
            session.length += new


@dataclass(frozen=True)
class KVSnapshot:
    """One session's committed keys and values for some layers: what moves between nodes.

    ``layers`` maps a global layer index to (keys, values), each (kv_heads, length, head_dim) and
    trimmed to ``length`` (no spare capacity travels).
    """

    session_id: str
    length: int
    layers: dict[int, tuple[torch.Tensor, torch.Tensor]]

    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers.values())

    def subset(self, layer_indices: Sequence[int] | range) -> KVSnapshot:
        """Only the given layers (those a receiving segment runs)."""
        return KVSnapshot(self.session_id, self.length, {i: self.layers[i] for i in layer_indices})


def snapshot(state: SessionState, layer_indices: Sequence[int] | range) -> KVSnapshot:
    """Copy out a session's committed K/V for ``layer_indices`` (every one must be present)."""
    missing = [i for i in layer_indices if i not in state.layers]
    if missing and state.length > 0:
        raise ValueError(f"session {state.session_id} holds no cache for layers {missing}")
    layers = {
        i: (
            state.layers[i].keys[:, : state.length].clone(),
            state.layers[i].values[:, : state.length].clone(),
        )
        for i in layer_indices
        if i in state.layers
    }
    return KVSnapshot(state.session_id, state.length, layers)


def restore(snap: KVSnapshot, layer_indices: Sequence[int] | range, like: torch.dtype) -> SessionState:
    """A fresh ``SessionState`` with ``snap`` for ``layer_indices`` (ValueError if it does not fit)."""
    expected = set(layer_indices)
    if snap.length < 0:
        raise ValueError(f"KV length must be >= 0, got {snap.length}")
    if snap.length > 0 and set(snap.layers) != expected:
        raise ValueError(
            f"KV for session {snap.session_id} has layers {sorted(snap.layers)}; "
            f"this segment runs layers {sorted(expected)}"
        )
    state = SessionState(snap.session_id, length=snap.length)
    for index, (keys, values) in sorted(snap.layers.items()):
        if keys.dim() != 3 or keys.shape != values.shape or keys.shape[1] != snap.length:
            raise ValueError(
                f"layer {index}: keys {tuple(keys.shape)} and values {tuple(values.shape)} must both be "
                f"(kv_heads, {snap.length}, head_dim)"
            )
        if keys.dtype != like or values.dtype != like:
            raise ValueError(f"layer {index}: KV dtype {keys.dtype} but this segment computes in {like}")
        state.layers[index] = LayerKV(keys.contiguous().clone(), values.contiguous().clone())
    return state
