"""What one simulation runs on: the scenario, the model's block costs, the orchestrator's declared facts
and settings exactly as ``edgesplit orchestrator`` derives them, and the simulator's own knobs.

Pure data and the one place that builds the controller of each mode (the same classes the live
orchestrator and ``edgesplit bench`` start). Knows nothing of SimPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.evaluation.modes import pinned_assignment
from edgesplit.evaluation.oracle import OracleController, Truth, TruthSource
from edgesplit.evaluation.scenario import Scenario
from edgesplit.orchestrator.cluster_facts import declared_facts
from edgesplit.orchestrator.config import OrchestratorConfig
from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.controller_settings import ControllerSettings
from edgesplit.orchestrator.core import OrchestratorCore
from edgesplit.orchestrator.fixed import FixedController
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.store import OrchestratorStore
from edgesplit.sim.sensors import NoiseSettings

SIM_MODES = ("single", "cloud", "static", "adaptive", "oracle")


@dataclass(frozen=True)
class SimSettings:
    """The simulator's own model parameters (the orchestrator's come from the scenario, as live)."""

    seed: int = 0
    """Seeds the measurement noise (the workload keeps the scenario's seed: the same requests as bench)."""
    noise: NoiseSettings = NoiseSettings()
    monitor_interval_s: float = 1.0
    """Δt of the monitoring loop (``edgesplit bench`` runs the orchestrator with 1 s)."""
    lead_in_s: float = 5.0
    """The orchestrator starts this long before the load (the live bench's start-up and warm-up)."""
    prepare_base_s: float = 0.15
    """Prepare: control round trip and warm-up of the new segments, before any loading."""
    disk_read_bytes_per_s: float = 500e6
    """Prepare: weights a node does not hold yet are loaded at this rate (its shard cache on disk)."""
    commit_s: float = 0.05
    """Commit: every node acknowledges, then the gateway switches to the new epoch."""
    release_delay_s: float = 2.0
    """The old epoch is released this long after the commit (steps still on it finish first)."""
    probe_peers: int | None = None
    """Peers each node probes per cycle, round-robin (None: every peer every cycle, as live nodes do;
    at 100 nodes that is 4,950 probe results a cycle for the controller to fold in)."""
    restart_resets_seq: bool = True
    """A restarted node counts its reports from 1 again, as a live node agent does (node/telemetry.py);
    the profiler ignores reports not newer than the last one it saw, so the orchestrator hears from the
    node again only once the new count passes the old one. False: the count carries on."""
    failover_poll_s: float = 0.05
    """A session whose chain lost a node re-checks the gateway's plan this often."""
    drain_s: float = 60.0
    """After the last arrival, requests still running get this long (plus their timeout) to finish."""


@dataclass(frozen=True)
class SimWorld:
    """Everything a run needs besides the mode; built once per scenario, shared by every mode."""

    scenario: Scenario
    blocks: tuple[BlockCost, ...]
    facts: ClusterFacts
    privacy_blocks: tuple[int, ...]
    config: OrchestratorConfig
    settings: SimSettings = field(default_factory=SimSettings)

    @property
    def source(self) -> str:
        return self.facts.source


def build_world(
    scenario: Scenario, blocks: Sequence[BlockCost], settings: SimSettings | None = None
) -> SimWorld:
    """The world of ``scenario``: declared facts only for the orchestrator (its emulation stays here)."""
    cluster = scenario.cluster()
    privacy = tuple(cluster.privacy.block_indices(len(blocks)))
    marked = tuple(replace(b, privacy=i in privacy) for i, b in enumerate(blocks))
    settings = settings or SimSettings()
    config = OrchestratorConfig.model_validate(  # as `edgesplit orchestrator` builds it from the file
        {
            "thresholds": cluster.thresholds.model_dump(),
            "monitor_interval_s": settings.monitor_interval_s,
            "privacy_default": cluster.request_privacy,
        }
    )
    facts = declared_facts(cluster.model_copy(update={"emulation": None}))
    return SimWorld(scenario, marked, facts, privacy, config, settings)


class MemoryTruth(TruthSource):
    """The evaluation oracle's ``TruthSource``, reading the simulator's truth instead of a file."""

    def __init__(self, blocks: Sequence[BlockCost], read: Callable[[], Truth]) -> None:
        super().__init__(Path("/dev/null"), blocks)
        self._read = read

    def read(self) -> Truth | None:
        self.truth = self._read()
        return self.truth


def make_core(world: SimWorld, mode: str, truth_now: Callable[[], Truth]) -> OrchestratorCore:
    """The orchestrator core of ``mode``, as ``edgesplit bench`` starts it (evaluation/modes.py):
    static plans once on the true t = 0 conditions and never changes; oracle re-plans on every change
    of the truth with T_cool = 0; adaptive is the shipped controller and sees measurements only."""
    sr: SplitRevision = world.config.split_revision()
    settings: ControllerSettings = world.config.controller_settings()
    store = OrchestratorStore(":memory:")
    blocks, facts = world.blocks, world.facts
    controller: AdaptiveController
    if mode == "adaptive":
        controller = AdaptiveController(blocks, facts, sr.plan, sr.evaluate, store, settings)
    elif mode == "static":
        at_start = truth_now()
        frozen = MemoryTruth(blocks, lambda: at_start)
        controller = FixedController(
            blocks, facts, sr.plan, sr.evaluate, store, settings, env_hook=frozen.apply
        )
    elif mode == "oracle":
        no_cooldown = replace(settings, thresholds=replace(settings.thresholds, cooldown_s=0.0))
        live = MemoryTruth(blocks, truth_now)
        controller = OracleController(blocks, facts, sr.plan, sr.evaluate, store, no_cooldown, live)
    elif mode in ("single", "cloud"):
        pinned = pinned_assignment(mode, world.scenario.cluster(), list(world.privacy_blocks), len(blocks))
        controller = FixedController(blocks, facts, sr.plan, sr.evaluate, store, settings, pinned=pinned)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(SIM_MODES)}")
    return OrchestratorCore(controller, store, Ed25519PrivateKey.generate())
