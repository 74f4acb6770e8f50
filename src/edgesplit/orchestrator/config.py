"""``OrchestratorConfig``: the orchestrator process role's settings (pydantic, cluster-file units).

Validates and converts to the core's frozen settings; reads no files itself and knows nothing of
the cluster's emulation section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgesplit.orchestrator.controller import ControllerSettings
from edgesplit.orchestrator.move_cost import MoveSettings
from edgesplit.orchestrator.profiler import ProfilerSettings
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.triggers import Hysteresis, Thresholds


class ThresholdsConfig(BaseModel):
    """Θ as the cluster file spells it (§4.3); defaults are the paper's Table 3."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(150.0, gt=0)
    """L_max: the end-to-end step latency EWMA above which the latency trigger fires, in ms."""
    utilization: float = Field(0.85, gt=0, le=1)
    """U_max: the utilisation (0–1) of a node serving the plan above which the trigger fires."""
    bandwidth_mbps: float = Field(50.0, gt=0)
    """B_min: the measured bandwidth of a link the plan uses below which the trigger fires, Mbit/s."""
    cooldown_s: float = Field(30.0, ge=0)
    """T_cool: minimum time between two changes, except for privacy violations and node loss, in s."""


class OrchestratorConfig(BaseModel):
    """Everything the ``edgesplit orchestrator`` process needs besides the cluster's facts."""

    model_config = ConfigDict(extra="forbid")

    thresholds: ThresholdsConfig = ThresholdsConfig.model_validate({})
    monitor_interval_s: float = Field(1.0, gt=0)
    """Δt: how often a monitoring cycle runs."""
    state_path: Path = Path("orchestrator.sqlite")
    """SQLite file with plans, the highest epoch issued and the decision log."""
    key_path: Path = Path("orchestrator_ed25519.pem")
    """The signing key, created (mode 0600) on first start; nodes are given its public half."""
    persist_cycles: int = Field(2, ge=1)
    """Monitoring cycles a threshold must be crossed for before its trigger fires."""
    release_fraction: float = Field(0.10, ge=0, lt=1)
    """How far inside its threshold a value must come back before the trigger re-arms."""
    ewma_alpha: float = Field(0.3, gt=0, le=1)
    """Weight of the newest (median-filtered) sample in every smoothed figure."""
    median_window: int = Field(5, ge=1)
    """Samples in the median filter in front of each EWMA (outliers shorter than half of it vanish)."""
    heartbeat_timeout_s: float = Field(5.0, gt=0)
    """A node silent this long is lost (node-loss trigger, acts at once)."""
    replan_interval_s: float = Field(10.0, ge=0)
    """While a trigger stays active without a change, re-plan at most this often."""
    improvement_interval_s: float | None = Field(120.0, gt=0)
    """With no trigger, look for a clearly better plan this often; null: only on triggers."""
    min_relative_gain: float = Field(0.10, ge=0, lt=1)
    """A triggered, non-urgent change must cut predicted latency by this fraction (or fix a target)."""
    improvement_min_gain: float = Field(0.20, ge=0, lt=1)
    """An untriggered change (improvement check) must cut predicted latency by this fraction."""
    horizon_s: float = Field(120.0, gt=0)
    """How long a new plan is expected to serve; a move's gain is counted over it, minus the move time."""
    disk_read_bytes_per_s: float = Field(500e6, gt=0)
    """Loading a shard a node caches on disk (its standby set), bytes/s."""
    privacy_default: Literal["high", "none"] = "high"
    """Privacy mode with no privacy-high request waiting ("none": critical blocks may leave trusted nodes)."""
    solver: str = "auto"
    planner_time_limit_s: float = Field(5.0, gt=0)
    min_change_epsilon: float | None = Field(0.02, ge=0)
    """Among plans within this relative Φ of the best, the planner picks the one moving fewest bytes."""

    def controller_settings(self) -> ControllerSettings:
        t = self.thresholds
        return ControllerSettings(
            thresholds=Thresholds.from_cluster_units(
                t.latency_ms, t.utilization, t.bandwidth_mbps, t.cooldown_s
            ),
            hysteresis=Hysteresis(release_fraction=self.release_fraction, persist_ticks=self.persist_cycles),
            move=MoveSettings(horizon_s=self.horizon_s, disk_read_bytes_per_s=self.disk_read_bytes_per_s),
            profiler=ProfilerSettings(alpha=self.ewma_alpha, window=self.median_window),
            min_relative_gain=self.min_relative_gain,
            improvement_interval_s=self.improvement_interval_s,
            improvement_min_gain=self.improvement_min_gain,
            replan_interval_s=self.replan_interval_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            privacy_default=self.privacy_default,
        )

    def split_revision(self) -> SplitRevision:
        return SplitRevision(self.solver, self.min_change_epsilon, self.planner_time_limit_s)
