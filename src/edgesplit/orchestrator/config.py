"""``OrchestratorConfig``: the orchestrator process role's settings (pydantic, cluster-file units).

Built from the cluster file's ``thresholds`` and ``orchestrator:`` sections plus command-line overrides;
converts to the core's frozen settings. Reads no files itself and never the cluster's emulation section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgesplit.cluster.config import ClusterConfig, OrchestratorSection
from edgesplit.orchestrator.controller_settings import ControllerSettings
from edgesplit.orchestrator.move_cost import MoveSettings
from edgesplit.orchestrator.profiler import ProfilerSettings
from edgesplit.orchestrator.service import ServiceSettings
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


class OrchestratorConfig(OrchestratorSection):
    """Everything the ``edgesplit orchestrator`` process needs besides the cluster's facts: the cluster
    file's ``orchestrator:`` knobs (inherited) plus Θ, the state files and the privacy default."""

    model_config = ConfigDict(extra="forbid")

    thresholds: ThresholdsConfig = ThresholdsConfig.model_validate({})
    state_path: Path = Path("orchestrator.sqlite")
    """SQLite file with plans, the highest epoch issued and the decision log."""
    key_path: Path = Path("orchestrator_ed25519.pem")
    """The signing key, created (mode 0600) on first start; nodes are given its public half."""
    privacy_default: Literal["high", "none"] = "high"
    """Privacy mode with no privacy-high request waiting ("none": critical blocks may leave trusted nodes)."""

    @classmethod
    def for_cluster(cls, cluster: ClusterConfig, state_dir: Path, **overrides: Any) -> OrchestratorConfig:
        """The cluster file's thresholds and ``orchestrator:`` section, then ``overrides`` (command-line
        flags such as ``monitor_interval_s``; a ``None`` override keeps the file's value). Raises
        ``pydantic.ValidationError`` on a bad override."""
        values: dict[str, Any] = cluster.orchestrator.model_dump()
        thresholds = cluster.thresholds.model_dump()
        cooldown = overrides.pop("cooldown_s", None)
        if cooldown is not None:
            thresholds["cooldown_s"] = cooldown
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(
            {
                **values,
                "thresholds": thresholds,
                "state_path": state_dir / "orchestrator.sqlite",
                "key_path": state_dir / "orchestrator_ed25519.pem",
                "privacy_default": cluster.request_privacy,
            }
        )

    def service_settings(self) -> ServiceSettings:
        """The process shell's knobs: Δt, and how long to wait for the nodes at start."""
        return ServiceSettings(
            interval_s=self.monitor_interval_s,
            start_timeout_s=self.start_timeout_s,
            start_grace_s=self.heartbeat_timeout_s,
        )

    def controller_settings(self) -> ControllerSettings:
        t = self.thresholds
        return ControllerSettings(
            thresholds=Thresholds.from_cluster_units(
                t.latency_ms, t.utilization, t.bandwidth_mbps, t.cooldown_s
            ),
            hysteresis=Hysteresis(release_fraction=self.release_fraction, persist_ticks=self.persist_cycles),
            move=MoveSettings(horizon_s=self.horizon_s, disk_read_bytes_per_s=self.disk_read_bytes_per_s),
            profiler=ProfilerSettings(
                alpha=self.ewma_alpha,
                window=self.median_window,
                bandwidth_window=self.bandwidth_window,
                bandwidth_quantile=self.bandwidth_quantile,
            ),
            min_relative_gain=self.min_relative_gain,
            improvement_interval_s=self.improvement_interval_s,
            improvement_min_gain=self.improvement_min_gain,
            confirm_s=self.confirm_s,
            replan_interval_s=self.replan_interval_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            privacy_default=self.privacy_default,
        )

    def split_revision(self) -> SplitRevision:
        return SplitRevision(self.solver, self.min_change_epsilon, self.planner_time_limit_s)
