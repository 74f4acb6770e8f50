"""Checks of a step's scalar fields before the node queues it: remote input, so never ``assert``.

Tensors are checked by ``HostedSegment.validate``; this covers what a peer could set to a value that
would hang or corrupt a step (a NaN deadline, a negative position, sampling values outside their range).
"""

from __future__ import annotations

import math

from edgesplit.errors import SessionError
from edgesplit.wire.messages import StepEnvelope

MAX_SESSION_ID_CHARS = 256
MAX_CONTINUE_STEPS = 8192
"""Most tokens one request may have the chain feed back (a peer must not start an endless loop)."""


def check_step_fields(env: StepEnvelope) -> None:
    """Raise ``SessionError`` naming the first field of ``env`` no honest sender would set."""
    if not 0 < len(env.session_id) <= MAX_SESSION_ID_CHARS:
        raise SessionError(
            f"a session id has 1..{MAX_SESSION_ID_CHARS} characters, got {len(env.session_id)}"
        )
    where = f"step of session {env.session_id!r}"
    if not math.isfinite(env.budget_s) or env.budget_s <= 0:
        raise SessionError(f"{where}: budget_s must be a positive number of seconds, got {env.budget_s}")
    if env.position < 0:
        raise SessionError(f"{where}: position must be >= 0, got {env.position}")
    if env.continue_steps > MAX_CONTINUE_STEPS:
        limit = MAX_CONTINUE_STEPS
        raise SessionError(f"{where}: continue_steps must be <= {limit}, got {env.continue_steps}")
    if env.continue_steps and (not math.isfinite(env.continue_budget_s) or env.continue_budget_s <= 0):
        raise SessionError(f"{where}: continue_budget_s must be a positive number of seconds")
    sampling = env.sampling
    if not math.isfinite(sampling.temperature) or sampling.temperature < 0:
        raise SessionError(f"{where}: temperature must be a finite number >= 0, got {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:  # also false for NaN
        raise SessionError(f"{where}: top_p must be in (0, 1], got {sampling.top_p}")
