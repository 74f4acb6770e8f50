"""The values a segment consumes and produces for one step of one session.

Shared by the segment runner (model/), the node agent (node/) and the codecs (wire/);
plain dataclasses over torch tensors, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgesplit.errors import SessionError


@dataclass(frozen=True)
class SamplingParams:
    """How the head turns logits into a token: greedy when ``temperature == 0``."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class SegmentStep:
    """One session's input to a segment for one prefill or decode step.

    ``inputs`` is token ids of shape (T,) int64 when the segment starts at block 0, else hidden
    states of shape (T, D). ``position`` is how many tokens of this session the segment's KV cache
    must already hold (0 for a prefill, which replaces any earlier state of the session). A position
    beyond the cache is a ``SessionNotFoundError`` so the caller can re-prefill from the history; a
    position below it rolls the cache back to it (a step replayed after a downstream failure).
    """

    session_id: str
    inputs: torch.Tensor
    position: int
    sampling: SamplingParams = SamplingParams()
    want_logits: bool = False


@dataclass(frozen=True)
class SegmentOutput:
    """A segment's output for one session: hidden states (T, D), or the sampled next token.

    ``logits`` (T, V) only when the step asked for them. ``error`` is set instead of any output
    when this session's step failed (bad tensor, unknown session, position mismatch): one session's
    failure never fails the other sessions of the same batch.
    """

    session_id: str
    hidden: torch.Tensor | None = None
    token_id: int | None = None
    logits: torch.Tensor | None = None
    error: SessionError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
