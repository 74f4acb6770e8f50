"""Factories for simulator tests: a small MEC scenario (the demo's shape) and its model's block costs,
built without torch so every test stays fast."""

from __future__ import annotations

from collections.abc import Sequence

from edgesplit.evaluation.scenario import Scenario, parse_scenario
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.sim.engine import SimRun
from edgesplit.sim.run import SimOutcome, prepare_world, simulate
from edgesplit.sim.world import SimSettings, SimWorld

KB = 1000

SCENARIO = """\
name: sim-test
model: builtin:llama-tiny
nodes:
  - {id: device, trusted: true, source: true, memory: 512KiB}
  - {id: mec1, trusted: true, memory: 4MiB}
  - {id: mec2, trusted: true, memory: 4MiB}
  - {id: cloud, trusted: false, memory: 64GiB}
links:
  default: {bandwidth_mbps: 50, rtt_ms: 40}
  pairs:
    - {a: device, b: mec1, bandwidth_mbps: 400, rtt_ms: 2}
    - {a: device, b: mec2, bandwidth_mbps: 400, rtt_ms: 3}
    - {a: mec1, b: mec2, bandwidth_mbps: 1000, rtt_ms: 1}
    - {a: mec1, b: cloud, bandwidth_mbps: 1000, rtt_ms: 20}
    - {a: mec2, b: cloud, bandwidth_mbps: 1000, rtt_ms: 20}
thresholds: {latency_ms: 50, utilization: 0.85, bandwidth_mbps: 50, cooldown_s: 10}
gateway: {request_timeout_s: 20}
emulation:
  nodes:
    device: {speed_factor: 0.1}
    mec1: {speed_factor: 1.0}
    mec2: {speed_factor: 0.8}
    cloud: {speed_factor: 2.0}
  links:
    - {a: device, b: mec1, bandwidth_mbps: 400, rtt_ms: 2}
    - {a: device, b: mec2, bandwidth_mbps: 400, rtt_ms: 3}
    - {a: device, b: cloud, bandwidth_mbps: 50, rtt_ms: 40}
    - {a: mec1, b: mec2, bandwidth_mbps: 1000, rtt_ms: 1}
    - {a: mec1, b: cloud, bandwidth_mbps: 1000, rtt_ms: 20}
    - {a: mec2, b: cloud, bandwidth_mbps: 1000, rtt_ms: 20}
  block_profile:
    1: {decode_ms: 5.5, prefill_ms_per_token: 0.3}
    2: {decode_ms: 5.5, prefill_ms_per_token: 0.3}
    3: {decode_ms: 5.5, prefill_ms_per_token: 0.3}
    4: {decode_ms: 5.5, prefill_ms_per_token: 0.3}
    5: {decode_ms: 3.45, prefill_ms_per_token: 0.2}
workload: {rate_rps: 2, duration_s: DURATION, prompt_tokens: 16, output_tokens: 8, seed: 7}
sla: {budget_ms: 400}
events: EVENTS
"""

COLLAPSE_AT_S = 10.0
COLLAPSE = [f"{{at_s: {COLLAPSE_AT_S:g}, kind: link, a: device, b: mec1, bandwidth_mbps: 5, rtt_ms: 160}}"]
KILL_MEC1 = ["{at_s: 10, kind: node_kill, node: mec1}"]


def make_scenario(
    events: list[str] | None = None, duration_s: float = 40.0, edits: Sequence[tuple[str, str]] = ()
) -> Scenario:
    """The test scenario with ``events``; ``edits`` are (old, new) text replacements in its YAML."""
    text = SCENARIO.replace("DURATION", f"{duration_s:g}")
    text = text.replace("EVENTS", "[]" if not events else "\n" + "".join(f"  - {e}\n" for e in events))
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return parse_scenario(text)


def make_blocks(layers: int = 4) -> list[BlockCost]:
    """embedding, ``layers`` layers, head: reference costs of a small llama (1 GFLOP/s reference)."""
    blocks = [BlockCost("embed", 0.0001, 100 * KB, 256)]
    blocks += [BlockCost(f"layer{i}", 0.0055, 400 * KB, 256, 512) for i in range(layers)]
    blocks.append(BlockCost("head", 0.00345, 100 * KB, 8))
    return blocks


def make_world(
    events: list[str] | None = None,
    duration_s: float = 40.0,
    *,
    seed: int = 0,
    nodes: int | None = None,
    settings: SimSettings | None = None,
    edits: Sequence[tuple[str, str]] = (),
) -> SimWorld:
    return prepare_world(
        make_scenario(events, duration_s, edits), make_blocks(), nodes=nodes, seed=seed, settings=settings
    )


def run_mode(world: SimWorld, mode: str, *, keep_inputs: bool = False) -> tuple[SimOutcome, SimRun]:
    outcome = simulate(world, [mode], keep_inputs=keep_inputs)
    return outcome, outcome.runs[mode]


def mean_latency(run: SimRun, start_s: float, end_s: float) -> float:
    """Mean true decode-step latency (s) of the steps started in [start_s, end_s)."""
    picked = [lat for t, lat, _ in run.steps if start_s <= t < end_s]
    assert picked, f"no decode step in [{start_s}, {end_s})"
    return sum(picked) / len(picked)
