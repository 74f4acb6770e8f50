"""The simulated data plane's timing: a step is never faster than its chain's compute and wire time
(worked out by hand from the scenario's numbers), and load only ever adds queueing on top."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_world import make_world, run_mode

# mec1 (speed 1.0) runs all six blocks: embedding 0.1 ms (no profile: its reference cost), four layers
# of 5.5 ms and the head's 3.45 ms; device~mec1 has a 2 ms RTT at 400 Mbit/s each way: 4 bytes in
# (the token id), 8 bytes back (the head's output).
UNLOADED_STEP_S = 0.0001 + 4 * 0.0055 + 0.00345 + 2 * 0.001 + (4 + 8) * 8 / 400e6


@settings(max_examples=8, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=12.0), seed=st.integers(min_value=0, max_value=1000))
def test_steps_are_never_faster_than_the_unloaded_chain(rate: float, seed: int) -> None:
    edits = [("rate_rps: 2", f"rate_rps: {rate:.3f}"), ("seed: 7", f"seed: {seed}")]
    outcome, run = run_mode(make_world(None, 6.0, edits=edits), "static")
    assert [p.assignment for _, p in run.plans] == [("mec1",) * 6]  # the chain the bound is for
    latencies = [lat for _, lat, _ in run.steps]
    assert latencies and min(latencies) >= UNLOADED_STEP_S - 1e-12
    result = outcome.results["static"]
    assert result.completed == result.requests and all(r.tokens == 8 for r in run.records)


def test_a_lone_request_steps_at_exactly_the_unloaded_chain_time() -> None:
    edits = [("rate_rps: 2", "rate_rps: 0.2")]  # ~1 request in 5 s: nothing to queue behind
    _, run = run_mode(make_world(None, 5.0, edits=edits), "static")
    lone = [lat for _, lat, _ in run.steps]
    assert lone and max(abs(lat - UNLOADED_STEP_S) for lat in lone) < 1e-9
