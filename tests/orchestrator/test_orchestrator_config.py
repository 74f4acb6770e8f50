"""The cluster file's optional ``orchestrator:`` section → ``OrchestratorConfig`` → the core's settings:
defaults are what the orchestrator did before the section existed, every key reaches its setting,
command-line flags win over the file, and a bad key or value is one line naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgesplit.cluster.config import OrchestratorSection
from edgesplit.cluster.loader import parse_cluster
from edgesplit.errors import ConfigError
from edgesplit.orchestrator.config import OrchestratorConfig
from edgesplit.orchestrator.controller_settings import ControllerSettings
from edgesplit.orchestrator.move_cost import MoveSettings
from edgesplit.orchestrator.planner.solve import SOLVERS
from edgesplit.orchestrator.profiler import CapacityProfiler, LinkObservation, ProfilerSettings
from edgesplit.orchestrator.service import ServiceSettings
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.triggers import Hysteresis, Thresholds

NODES = """model: builtin:llama-tiny
nodes:
  - {id: device, source: true, trusted: true}
  - {id: mec1}
"""


def config_of(extra: str = "", **overrides: float | None) -> OrchestratorConfig:
    cluster = parse_cluster(NODES + extra, "c.yaml")
    return OrchestratorConfig.for_cluster(cluster, Path("state"), **overrides)


def test_without_the_section_every_setting_is_the_one_used_before_it_existed() -> None:
    config = config_of()
    settings = config.controller_settings()
    # The paper's Table 3 for Θ, and the dataclasses' own defaults for everything else.
    assert settings.thresholds == Thresholds(0.150, 0.85, 50e6, 30.0)
    defaults = ControllerSettings()
    assert settings.profiler == ProfilerSettings()
    assert settings.move == MoveSettings()
    assert settings.hysteresis == Hysteresis()
    for name in (
        "confirm_s",
        "improvement_interval_s",
        "improvement_min_gain",
        "min_relative_gain",
        "replan_interval_s",
        "heartbeat_timeout_s",
    ):
        assert getattr(settings, name) == getattr(defaults, name), name
    assert config.split_revision() == SplitRevision()
    shell = config.service_settings()
    assert shell.interval_s == ServiceSettings().interval_s
    assert shell.start_timeout_s == ServiceSettings().start_timeout_s
    assert config.state_path == Path("state/orchestrator.sqlite")
    assert config.key_path == Path("state/orchestrator_ed25519.pem")


EVERY_KEY = """orchestrator:
  monitor_interval_s: 0.5
  improvement_interval_s: 7
  improvement_min_gain: 0.3
  min_relative_gain: 0.15
  confirm_s: 1.5
  horizon_s: 30
  replan_interval_s: 4
  persist_cycles: 3
  release_fraction: 0.2
  ewma_alpha: 0.5
  median_window: 3
  bandwidth_window: 9
  bandwidth_quantile: 0.6
  heartbeat_timeout_s: 8
  start_timeout_s: 12
  disk_read_bytes_per_s: 1.0e8
  solver: exact
  planner_time_limit_s: 2
  min_change_epsilon: 0.05
"""


def test_every_key_of_the_section_reaches_its_setting() -> None:
    # The text above sets every key the section has (a new key must be added here too).
    assert set(yaml.safe_load(EVERY_KEY)["orchestrator"]) == set(OrchestratorSection.model_fields)
    config = config_of(EVERY_KEY)
    s = config.controller_settings()
    assert (s.confirm_s, s.improvement_interval_s, s.improvement_min_gain) == (1.5, 7.0, 0.3)
    assert (s.min_relative_gain, s.replan_interval_s, s.heartbeat_timeout_s) == (0.15, 4.0, 8.0)
    assert (s.hysteresis.persist_ticks, s.hysteresis.release_fraction) == (3, 0.2)
    assert (s.profiler.alpha, s.profiler.window) == (0.5, 3)
    assert (s.profiler.bandwidth_window, s.profiler.bandwidth_quantile) == (9, 0.6)
    assert (s.move.horizon_s, s.move.disk_read_bytes_per_s) == (30.0, 1e8)
    assert config.split_revision() == SplitRevision("exact", 0.05, 2.0)
    shell = config.service_settings()
    assert (shell.interval_s, shell.start_timeout_s, shell.start_grace_s) == (0.5, 12.0, 8.0)


def test_the_bandwidth_window_and_quantile_change_the_link_estimate() -> None:
    """Behaviour, not just fields: believing the lowest sample of the window (quantile 0), one
    delayed probe among six pulls the estimate down; the default high quantile ignores it, and so
    does a window of one sample once newer probes arrived."""

    def estimate(extra: str) -> float:
        profiler = CapacityProfiler({}, config_of(extra).controller_settings().profiler)
        for i, bps in enumerate([400e6, 400e6, 400e6, 40e6, 400e6, 400e6]):
            profiler.add_link_observation(LinkObservation("device", "mec1", bandwidth_bps=bps), float(i))
        link = profiler.snapshot(6.0).links[("device", "mec1")]
        assert link.bandwidth_bps is not None
        return link.bandwidth_bps

    assert estimate("") > 300e6
    assert estimate("orchestrator: {bandwidth_quantile: 0.0}\n") < 300e6
    assert estimate("orchestrator: {bandwidth_quantile: 0.0, bandwidth_window: 1}\n") > 300e6


def test_command_line_flags_win_over_the_file_and_none_keeps_it() -> None:
    extra = (
        "thresholds: {cooldown_s: 12}\norchestrator: {monitor_interval_s: 0.5, improvement_interval_s: 9}\n"
    )
    kept = config_of(extra, monitor_interval_s=None, improvement_interval_s=None, cooldown_s=None)
    assert kept.monitor_interval_s == 0.5 and kept.improvement_interval_s == 9.0
    assert kept.thresholds.cooldown_s == 12.0
    flagged = config_of(extra, monitor_interval_s=0.2, improvement_interval_s=2.0, cooldown_s=4.0)
    assert flagged.monitor_interval_s == 0.2 and flagged.improvement_interval_s == 2.0
    assert flagged.controller_settings().thresholds.cooldown_s == 4.0


def test_null_improvement_interval_means_only_on_triggers() -> None:
    config = config_of("orchestrator: {improvement_interval_s: null}\n")
    assert config.controller_settings().improvement_interval_s is None


def test_the_section_offers_exactly_the_planners_solvers() -> None:
    solver = OrchestratorSection.model_fields["solver"].annotation
    assert set(getattr(solver, "__args__", ())) == set(SOLVERS)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "orchestrator:\n  confrim_s: 1\n",
            "c.yaml:6: orchestrator.confrim_s: unknown key (allowed: monitor_interval_s, ",
        ),
        (
            "orchestrator:\n  confirm_s: 1\n  bandwidth_quantile: 1.5\n",
            "c.yaml:7: orchestrator.bandwidth_quantile: Input should be less than or equal to 1",
        ),
        (
            "orchestrator:\n  improvement_interval_s: 0\n",
            "c.yaml:6: orchestrator.improvement_interval_s: Input should be greater than 0",
        ),
        (
            "orchestrator:\n  bandwidth_window: 0\n",
            "c.yaml:6: orchestrator.bandwidth_window: Input should be greater than or equal to 1",
        ),
        ("orchestrator:\n  solver: fastest\n", "c.yaml:6: orchestrator.solver: Input should be 'auto', "),
        ("orchestrator: 5\n", "c.yaml:5: orchestrator: Input should be a valid dictionary"),
    ],
)
def test_a_bad_key_or_value_names_file_line_and_key(extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster(NODES + extra, "c.yaml")
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_the_thresholds_section_keeps_table_3_beside_the_orchestrator_section() -> None:
    cluster = parse_cluster(NODES + "orchestrator: {confirm_s: 2}\n", "c.yaml")
    t = cluster.thresholds
    assert (t.latency_ms, t.utilization, t.bandwidth_mbps, t.cooldown_s) == (150.0, 0.85, 50.0, 30.0)
