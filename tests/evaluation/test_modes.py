"""Evaluation modes: pinned plans, the frozen (static) controller, the oracle and the harness's truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesplit.cluster.config import ClusterConfig
from edgesplit.errors import ScenarioError
from edgesplit.evaluation.disturbances import EmulationState
from edgesplit.evaluation.modes import cloud_node, mode_setup, parse_modes, pinned_assignment
from edgesplit.evaluation.oracle import OracleController, TrueLink, TrueNode, Truth, TruthSource
from edgesplit.evaluation.scenario import load_scenario
from edgesplit.orchestrator.controller_settings import ControllerSettings, MonitoringInputs
from edgesplit.orchestrator.events import Action, DecisionEvent
from edgesplit.orchestrator.fixed import FixedController
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts, LinkPrior, NodeFacts
from edgesplit.orchestrator.profiler import NodeTelemetry
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.triggers import Thresholds

SCENARIOS = Path(__file__).parents[2] / "scenarios"
MB = 1_000_000


class Sink:
    def __init__(self) -> None:
        self.events: list[DecisionEvent] = []

    def append(self, event: DecisionEvent) -> int:
        self.events.append(event)
        return len(self.events)

    def update(self, event: DecisionEvent) -> None:
        self.events.append(event)


def blocks() -> list[BlockCost]:
    """embed, 4 layers, head; the first three and the head are privacy-critical, as in the scenarios."""
    out = [BlockCost("embed", 0.0, MB, 256, privacy=True)]
    out += [BlockCost(f"layer{i}", 0.0001, MB, 256, 512, privacy=i == 0) for i in range(4)]
    return [*out, BlockCost("head", 0.0001, MB, 4, privacy=True)]


def facts() -> ClusterFacts:
    nodes = (
        NodeFacts("device", True, 100 * MB, source=True),
        NodeFacts("mec1", True, 100 * MB),
        NodeFacts("mec2", True, 100 * MB),
    )
    links = (
        LinkPrior("device", "mec1", 400e6, 0.002),
        LinkPrior("device", "mec2", 400e6, 0.003),
        LinkPrior("mec1", "mec2", 1000e6, 0.001),
    )
    return ClusterFacts(nodes, links)


def settings(cooldown_s: float = 1000.0) -> ControllerSettings:
    return ControllerSettings(thresholds=Thresholds.from_cluster_units(50, 0.85, 50, cooldown_s))


def reports(seq: int, epochs: dict[str, int]) -> MonitoringInputs:
    return MonitoringInputs(
        reports=[
            NodeTelemetry(n, seq, 0.0, 1.0, 0.0, mem_available_bytes=100 * MB, epoch=e)
            for n, e in sorted(epochs.items())
        ]
    )


def truth(version: int, mec1_load: float = 0.0, mec1_up: bool = True, mec1_rtt_ms: float = 2.0) -> Truth:
    return Truth(
        version=version,
        nodes={
            "device": TrueNode(speed_factor=0.1),
            "mec1": TrueNode(speed_factor=1.0, background_load=mec1_load, up=mec1_up),
            "mec2": TrueNode(speed_factor=0.8),
        },
        links=[
            TrueLink(a="device", b="mec1", bandwidth_mbps=400, rtt_ms=mec1_rtt_ms),
            TrueLink(a="device", b="mec2", bandwidth_mbps=400, rtt_ms=3),
            TrueLink(a="mec1", b="mec2", bandwidth_mbps=1000, rtt_ms=1),
        ],
        block_decode_ms={1: 5.5, 2: 5.5, 3: 5.5, 4: 5.5, 5: 5.5},
    )


# --- modes -------------------------------------------------------------------------------------


def test_parse_modes_accepts_known_and_refuses_unknown_repeated_or_empty() -> None:
    assert parse_modes("static, adaptive") == ["static", "adaptive"]
    for bad, word in (("static,fast", "fast"), ("static,static", "twice"), (" , ", "at least one")):
        with pytest.raises(ScenarioError, match=word):
            parse_modes(bad)


def test_single_and_cloud_pin_the_paper_baselines_on_the_smart_city_scenario() -> None:
    scenario = load_scenario(SCENARIOS / "mec-smart-city.yaml")
    cluster = scenario.cluster()
    assert pinned_assignment("single", cluster, [0, 1, 5], 6) == ["device"] * 6
    cloud = pinned_assignment("cloud", cluster, [0, 1, 5], 6)
    assert cloud == ["device", "device", "cloud", "cloud", "cloud", "device"]


def test_cloud_node_falls_back_to_the_largest_untrusted_node() -> None:
    cluster = ClusterConfig.model_validate(
        {
            "model": "builtin:llama-tiny",
            "nodes": [
                {"id": "d", "trusted": True, "source": True},
                {"id": "far", "memory": "1GiB"},
                {"id": "dc", "memory": "8GiB"},
                {"id": "t", "trusted": True, "memory": "64GiB"},
            ],
        }
    )
    assert cloud_node(cluster) == "dc"


def test_mode_setup_gives_each_mode_its_orchestrator_flags(tmp_path: Path) -> None:
    cluster = load_scenario(SCENARIOS / "mec-smart-city.yaml").cluster()
    truth_path = tmp_path / "truth.json"
    single = mode_setup("single", cluster, [0, 1, 5], 6, tmp_path, truth_path)
    assert single.orchestrator_args[0] == "--pin-plan"
    assert json.loads((tmp_path / "pinned-single.json").read_text()) == {"assignment": ["device"] * 6}
    static = mode_setup("static", cluster, [0, 1, 5], 6, tmp_path, truth_path)
    assert "--frozen" in static.orchestrator_args and static.truth_at_start and not static.live_truth
    oracle = mode_setup("oracle", cluster, [0, 1, 5], 6, tmp_path, truth_path)
    assert oracle.live_truth and "--frozen" not in oracle.orchestrator_args
    assert mode_setup("adaptive", cluster, [0, 1, 5], 6, tmp_path, truth_path).orchestrator_args == ()


# --- the frozen controller ----------------------------------------------------------------------


def test_pinned_controller_deploys_exactly_the_pin_and_never_moves() -> None:
    sr = SplitRevision()
    pin = ("device", "device", "mec2", "mec2", "mec2", "device")
    c = FixedController(blocks(), facts(), sr.plan, sr.evaluate, Sink(), settings(0.0), pinned=pin)
    c.bootstrap(0.0, reports(1, {"device": 0, "mec1": 0, "mec2": 0}))
    assert c.pending_plan is not None and c.pending_plan.assignment == pin
    c.on_committed(1, 0.5)
    # Even with the pinned node gone silent and a cool-down of 0, nothing moves.
    for t in range(1, 30):
        event = c.tick(float(t), reports(t + 1, {"device": 1, "mec1": 1}))
        assert event.action is Action.KEEP
    assert c.plan is not None and c.plan.assignment == pin and c.plan.epoch == 1


def test_pin_with_unknown_node_or_wrong_length_is_refused() -> None:
    sr = SplitRevision()
    with pytest.raises(ValueError, match="unknown node"):
        FixedController(blocks(), facts(), sr.plan, sr.evaluate, Sink(), pinned=["x"] * 6)
    with pytest.raises(ValueError, match="blocks"):
        FixedController(blocks(), facts(), sr.plan, sr.evaluate, Sink(), pinned=["device"] * 5)


def test_frozen_controller_redeploys_the_same_assignment_on_a_restarted_node() -> None:
    sr = SplitRevision()
    pin = ("device", "device", "mec1", "mec1", "mec1", "device")
    c = FixedController(blocks(), facts(), sr.plan, sr.evaluate, Sink(), settings(), pinned=pin)
    c.bootstrap(0.0, reports(1, {"device": 0, "mec1": 0, "mec2": 0}))
    c.on_committed(1, 0.0)
    assert c.tick(5.0, reports(2, {"device": 1, "mec1": 1, "mec2": 0})).action is Action.KEEP
    # mec1 restarted: alive, but holding no epoch.
    event = c.tick(6.0, reports(3, {"device": 1, "mec1": 0, "mec2": 0}))
    assert event.action is Action.RECONFIGURE and event.new_epoch == 2
    assert c.pending_plan is not None and c.pending_plan.assignment == pin


# --- the oracle ---------------------------------------------------------------------------------


def test_truth_source_gives_speed_relative_to_the_reference_work(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    truth(1).write(path)
    source = TruthSource(path, blocks())
    assert source.read() is not None
    # Reference 0.1 ms per profiled block, true 5.5 ms at speed factor 1.0 and 0.8.
    assert source.speed(TrueNode(speed_factor=1.0), None) == pytest.approx(0.1 / 5.5)
    assert source.speed(TrueNode(speed_factor=0.8), None) == pytest.approx(0.08 / 5.5)


def test_oracle_replans_at_once_when_the_truth_changes_and_ignores_the_cooldown(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    truth(1).write(path)
    sr = SplitRevision()
    c = OracleController(
        blocks(), facts(), sr.plan, sr.evaluate, Sink(), settings(), TruthSource(path, blocks())
    )
    c.bootstrap(0.0, reports(1, {"device": 0, "mec1": 0, "mec2": 0}))
    first = c.pending_plan
    assert first is not None and "mec1" in first.assignment and "device" not in first.assignment[2:5]
    c.on_committed(1, 0.0)
    assert c.tick(1.0, reports(2, {"device": 1, "mec1": 1, "mec2": 0})).action is Action.KEEP
    truth(2, mec1_rtt_ms=300).write(path)
    event = c.tick(2.0, reports(3, {"device": 1, "mec1": 1, "mec2": 0}))
    assert event.action is Action.RECONFIGURE  # 2 s after the last change, cool-down 1000 s
    moved = c.pending_plan
    assert moved is not None and moved.assignment != first.assignment
    # No hop crosses the slow device–mec1 link any more (the chain starts and ends at the device).
    assert moved.assignment[0] != "mec1" and moved.assignment[-1] != "mec1"
    c.on_committed(2, 2.5)
    assert c.tick(4.0, reports(4, {"device": 2, "mec1": 2, "mec2": 2})).action is Action.KEEP


def test_oracle_moves_off_a_node_the_truth_says_is_down(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    truth(1).write(path)
    sr = SplitRevision()
    c = OracleController(
        blocks(), facts(), sr.plan, sr.evaluate, Sink(), settings(), TruthSource(path, blocks())
    )
    c.bootstrap(0.0, reports(1, {"device": 0, "mec1": 0, "mec2": 0}))
    c.on_committed(1, 0.0)
    truth(2, mec1_up=False).write(path)
    event = c.tick(1.0, reports(2, {"device": 1, "mec1": 1, "mec2": 0}))
    assert event.action is Action.RECONFIGURE
    assert c.pending_plan is not None and "mec1" not in c.pending_plan.assignment


# --- the harness's view of the emulation --------------------------------------------------------


def test_emulation_state_changes_both_directions_and_the_truth_follows() -> None:
    cluster = load_scenario(SCENARIOS / "mec-smart-city.yaml").cluster()
    state = EmulationState(cluster)
    before = state.truth(0.0)
    assert {(lk.a, lk.b): lk.rtt_ms for lk in before.links}[("device", "mec1")] == 2
    assert before.nodes["device"].speed_factor == 0.1 and before.block_decode_ms[5] == 3.45
    assert sorted(state.set_link("device", "mec1", 5, 160)) == ["device", "mec1"]
    assert state.section("device")["links"]["mec1"]["rtt_ms"] == 160
    assert state.section("mec1")["links"]["device"]["bandwidth_mbps"] == 5
    state.set_load("mec1", 0.7)
    state.set_up("mec2", False)
    after = state.truth(10.0)
    assert after.version > before.version
    assert {(lk.a, lk.b): lk.bandwidth_mbps for lk in after.links}[("device", "mec1")] == 5
    assert after.nodes["mec1"].background_load == 0.7 and not after.nodes["mec2"].up
