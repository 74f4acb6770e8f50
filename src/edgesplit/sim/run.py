"""Runs a scenario's modes in the simulator and summarises them exactly as ``edgesplit bench`` does
(evaluation/metrics.py ``summarize``, report.py ``Timeline``), so the two produce comparable tables.

The only module of ``sim/`` that touches the model checkpoint: block costs come from the model core's
cost model, as the live orchestrator computes them (orchestrator/cluster_facts.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgesplit.evaluation.metrics import ModeResult, summarize
from edgesplit.evaluation.report import Timeline
from edgesplit.evaluation.scenario import Scenario
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.sim.engine import ClusterSim, SimRun
from edgesplit.sim.scale import scale_scenario
from edgesplit.sim.world import SimSettings, SimWorld, build_world

ModeProgress = Callable[[str, float, float], None]
"""``(mode, simulated seconds done, simulated seconds planned)``."""


@dataclass(frozen=True)
class SimOutcome:
    """Every mode's §4.4 figures, its timeline for the plots, and the raw run."""

    results: dict[str, ModeResult]
    timelines: dict[str, Timeline]
    runs: dict[str, SimRun]


def model_blocks(scenario: Scenario, base_dir: Path | None = None) -> list[BlockCost]:
    """The model's reference block costs, from its checkpoint (built once for ``builtin:`` models)."""
    from edgesplit.cluster.roles import num_blocks_of
    from edgesplit.model.builtin import resolve_model
    from edgesplit.orchestrator.cluster_facts import block_costs

    spec = scenario.model
    if base_dir is not None and not spec.startswith("builtin:") and not Path(spec).is_absolute():
        spec = str(base_dir / spec)
    path = resolve_model(spec)
    privacy = scenario.privacy.block_indices(num_blocks_of(path))
    return block_costs(path, privacy)


def prepare_world(
    scenario: Scenario,
    blocks: Sequence[BlockCost],
    *,
    nodes: int | None = None,
    seed: int = 0,
    settings: SimSettings | None = None,
) -> SimWorld:
    """The world to simulate: ``scenario`` scaled to ``nodes`` (if given), seeded by ``seed``."""
    scaled = scenario if nodes is None else scale_scenario(scenario, nodes, seed)
    base = settings or SimSettings()
    return build_world(scaled, blocks, replace(base, seed=seed))


def simulate(
    world: SimWorld, modes: Sequence[str], progress: ModeProgress | None = None, *, keep_inputs: bool = False
) -> SimOutcome:
    """Each mode on a fresh simulated cluster, the same requests and events every time."""
    results: dict[str, ModeResult] = {}
    timelines: dict[str, Timeline] = {}
    runs: dict[str, SimRun] = {}
    for mode in modes:
        sim = ClusterSim(world, mode, keep_inputs=keep_inputs)

        def on_progress(done: float, total: float, mode: str = mode) -> None:
            if progress is not None:
                progress(mode, done, total)

        run = sim.run(on_progress)
        runs[mode] = run
        results[mode] = summarize(
            run.records,
            budget_ms=world.scenario.sla.budget_ms,
            duration_s=world.scenario.workload.duration_s,
            utilization_samples=run.utilization,
            reconfigurations=len(run.reconfigurations),
            trusted_nodes=world.scenario.trusted_nodes(),
            privacy_blocks=world.privacy_blocks,
        )
        timelines[mode] = Timeline(run.records, run.events, run.reconfigurations)
    return SimOutcome(results, timelines, runs)
