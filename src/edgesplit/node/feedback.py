"""Chain-driven decoding on the node: the last hop feeds its sampled token straight back to hop 0.

Without it every decode step crosses the gateway (last hop → gateway → hop 0): two messages and two
processes' wake-ups per token that the model does not need. With it the gateway sends a session's first
step once, with ``continue_steps``; each result still reaches the gateway's sink (for streaming), off
the critical path. The gateway halts a session (``HaltSession``) to move it to a new plan: the next
fed-back step is then answered with ``stream_halted``, so the old chain's caches hold exactly the
tokens delivered.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from edgesplit.model.steps import SamplingParams
from edgesplit.wire.messages import StepEnvelope

HALT_MEMORY_S = 600.0
"""How long a halt is remembered (a halted session is ended by the gateway soon after)."""


def fed_back_step(env: StepEnvelope, token_id: int) -> StepEnvelope | None:
    """The step the last hop sends to hop 0 after sampling ``token_id`` in ``env``; None when the
    session's chain-driven run is over (no steps left, or a stop token)."""
    if env.continue_steps <= 0 or token_id in env.stop_token_ids or env.inputs is None:
        return None
    sampling = env.sampling
    if sampling.seed is not None and not sampling.greedy:  # the gateway's per-step seed: base + index
        sampling = SamplingParams(sampling.temperature, sampling.top_p, sampling.seed + 1)
    return replace(
        env,
        step_id=env.step_id + 1,
        hop_index=0,
        position=env.position + int(env.inputs.shape[0]),
        inputs=torch.tensor([token_id], dtype=torch.int64),
        sampling=sampling,
        timings=(),
        budget_s=env.continue_budget_s,
        continue_steps=env.continue_steps - 1,
        continued=True,
    )


class HaltedSessions:
    """Sessions whose chain-driven run the gateway stopped (remembered for ``HALT_MEMORY_S``)."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def halt(self, session_id: str) -> None:
        now = time.monotonic()
        self._at[session_id] = now
        if len(self._at) > 1024:  # forget old halts (their sessions have ended long ago)
            self._at = {s: t for s, t in self._at.items() if now - t <= HALT_MEMORY_S}

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._at

    def forget(self, session_id: str) -> None:
        self._at.pop(session_id, None)
