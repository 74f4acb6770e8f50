"""Decision events cross HTTP as strict JSON: a non-finite figure must not make the post fail."""

from __future__ import annotations

import json
import math

import pytest

from edgesplit.orchestrator.events import (
    Action,
    CandidateKind,
    CandidateRecord,
    DecisionEvent,
    TriggerFiring,
    TriggerKind,
    json_safe,
)


def test_non_finite_figures_become_null_and_the_rest_survives() -> None:
    blocked = CandidateRecord(CandidateKind.RESPLIT, ("a", "b"), True, 0.12, move_s=math.inf, cost_s=math.nan)
    event = DecisionEvent(
        10.0,
        1,
        Action.KEEP,
        "move does not pay",
        (TriggerFiring(TriggerKind.BANDWIDTH, math.inf, 50e6, "a~b"),),
        (blocked,),
    )
    raw = {"kind": "decision", **event.to_dict()}
    with pytest.raises(ValueError):
        json.dumps(raw, allow_nan=False)  # what an HTTP client's strict encoder does
    wire = json.loads(json.dumps(json_safe(raw), allow_nan=False))
    assert wire["triggers"][0]["value"] is None and wire["triggers"][0]["threshold"] == 50e6
    candidate = wire["candidates"][0]
    assert candidate["move_s"] is None and candidate["cost_s"] is None
    assert candidate["predicted_latency_s"] == 0.12 and candidate["assignment"] == ["a", "b"]
    assert wire["reason"] == "move does not pay"
