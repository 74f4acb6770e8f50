"""Scenario files: defaults, the cluster part, and one-line errors naming the key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesplit.cluster.config import ClusterConfig
from edgesplit.errors import ConfigError, ScenarioError
from edgesplit.evaluation.scenario import (
    LinkEvent,
    NodeKillEvent,
    NodeLoadEvent,
    NodeReturnEvent,
    load_scenario,
    parse_scenario,
)

SCENARIO = """\
name: tiny-mec
model: builtin:llama-tiny
nodes:
  - {id: device, trusted: true, source: true}
  - {id: mec1, trusted: true}
  - {id: cloud}
links:
  default: {bandwidth_mbps: 50, rtt_ms: 40}
workload:
  rate_rps: 2
  duration_s: 30
  prompt_tokens: 8
  output_tokens: 4
  privacy_high_fraction: 0.5
  seed: 7
sla: {budget_ms: 300}
events:
  - {at_s: 5, kind: link, a: device, b: mec1, bandwidth_mbps: 10}
  - {at_s: 8, kind: node_load, node: mec1, load: 0.7}
  - {at_s: 10, kind: node_kill, node: mec1}
  - {at_s: 20, kind: node_return, node: mec1}
"""


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_full_scenario_parses_with_typed_events() -> None:
    scenario = parse_scenario(SCENARIO)
    assert scenario.name == "tiny-mec"
    assert scenario.workload.rate_rps == 2 and scenario.workload.seed == 7
    assert scenario.workload.arrivals == "poisson"
    assert scenario.sla.budget_ms == 300
    kinds = [type(e) for e in scenario.events]
    assert kinds == [LinkEvent, NodeLoadEvent, NodeKillEvent, NodeReturnEvent]
    assert scenario.trusted_nodes() == {"device", "mec1"}


def test_defaults_sla_400_no_events_all_private() -> None:
    text = SCENARIO.split("sla:")[0].replace("  privacy_high_fraction: 0.5\n", "")
    scenario = parse_scenario(text)
    assert scenario.sla.budget_ms == 400
    assert scenario.events == []
    assert scenario.workload.privacy_high_fraction == 1.0


def test_cluster_part_is_a_plain_cluster_config() -> None:
    cluster = parse_scenario(SCENARIO).cluster()
    assert type(cluster) is ClusterConfig
    assert [n.id for n in cluster.nodes] == ["device", "mec1", "cloud"]
    assert cluster.links.default is not None and cluster.links.default.rtt_ms == 40
    assert not hasattr(cluster, "workload")


def test_scenario_error_is_a_config_error_with_its_own_code() -> None:
    assert issubclass(ScenarioError, ConfigError)
    assert ScenarioError.code == "invalid_scenario" and ScenarioError.exit_code == 2


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("node: mec1, load", "node: mec7, load", "s.yaml:19: events.1.node: event names unknown node 'mec7'"),
        ("b: mec1, bandwidth", "b: edge9, bandwidth", "s.yaml:18: events.0.b: event names unknown node"),
        ("at_s: 20", "at_s: 30", "s.yaml:21: events.3.at_s: event at 30 s is not before the end"),
        ("at_s: 20", "at_s: 45.5", "events.3.at_s: event at 45.5 s is not before the end"),
        ("rate_rps: 2", "rate_rps: -1", "s.yaml:10: workload.rate_rps: Input should be greater than 0"),
        ("rate_rps: 2", "rate_rps: 0", "s.yaml:10: workload.rate_rps: Input should be greater than 0"),
        ("duration_s: 30", "duration_s: 0", "s.yaml:11: workload.duration_s:"),
        ("privacy_high_fraction: 0.5", "privacy_high_fraction: 1.5", "workload.privacy_high_fraction:"),
        ("load: 0.7", "load: 1.0", "s.yaml:19: events.1.load:"),
        ("kind: node_kill", "kind: node_explode", "s.yaml:20: events.2.kind: Input tag 'node_explode'"),
        (", bandwidth_mbps: 10}", "}", "s.yaml:18: events.0: a link event sets bandwidth_mbps, rtt_ms"),
        ("kind: node_kill", "kind: node_load, load: 0.1", "events.3.node: node 'mec1' returns at 20 s"),
        ("kill, node: mec1", "kill, node: device", "events.2.node: the source node 'device'"),
        ("sla: {budget_ms: 300}", "sla: {budget_ms: 300, p: 1}", "s.yaml:16: sla.p: unknown key"),
        ("seed: 7", "sed: 7", "s.yaml:15: workload.sed: unknown key"),
        ("name: tiny-mec\n", "", "s.yaml:1: name: missing required key"),
        ("{id: mec1, trusted: true}", "{id: mec1, trustd: true}", "s.yaml:5: nodes.1.trustd: unknown key"),
    ],
)
def test_bad_scenarios_fail_with_one_line_naming_key_and_line(old: str, new: str, expected: str) -> None:
    assert old in SCENARIO
    assert expected in error_of(SCENARIO.replace(old, new, 1))


def test_events_are_checked_in_time_order_not_file_order() -> None:
    swapped = SCENARIO.replace("at_s: 10, kind: node_kill", "at_s: 25, kind: node_kill")
    assert "events.3.node: node 'mec1' returns at 20 s but was not killed before" in error_of(swapped)


def test_missing_file_and_non_mapping_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "nope.yaml")
    assert "s.yaml:1:" in error_of("- just\n- a list\n")
    assert "not valid YAML" in error_of("name: [unclosed\n")


def test_load_scenario_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    assert load_scenario(path).workload.duration_s == 30


SHIPPED = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenarios_load_and_their_cluster_part_is_the_file_minus_scenario_keys(path: Path) -> None:
    import yaml

    scenario = load_scenario(path)
    data = yaml.safe_load(path.read_text())
    for key in ("name", "workload", "sla", "events"):
        data.pop(key, None)
    assert scenario.cluster() == ClusterConfig.model_validate(data)
