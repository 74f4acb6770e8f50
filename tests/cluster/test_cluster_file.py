"""The cluster file: defaults, examples, and errors that name the bad key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.cluster.config import parse_bytes
from edgesplit.cluster.loader import load_cluster, parse_cluster
from edgesplit.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))

MINIMAL = """\
model: builtin:llama-tiny
nodes:
  - id: device
    source: true
    trusted: true
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_cluster(text, "c.yaml")
    return str(info.value)


def test_defaults_are_the_papers_table_3() -> None:
    cfg = parse_cluster(MINIMAL)
    t = cfg.thresholds
    assert (t.latency_ms, t.utilization, t.bandwidth_mbps, t.cooldown_s) == (150, 0.85, 50, 30)
    assert (cfg.weights.alpha, cfg.weights.beta, cfg.weights.gamma) == (1.0, 0.0, 0.0)
    # embedding, first layer and head of a 4-layer model (blocks 0..5).
    assert cfg.privacy.block_indices(6) == [0, 1, 5]
    assert cfg.emulation is None
    assert cfg.source.id == "device"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path: Path) -> None:
    cfg = load_cluster(path)
    assert cfg.nodes and cfg.source.id in {n.id for n in cfg.nodes}


def test_three_node_example_has_device_mec_cloud_and_emulation() -> None:
    cfg = load_cluster(Path(__file__).parents[2] / "examples" / "mec-3node.yaml")
    assert [n.id for n in cfg.nodes] == ["device", "mec1", "cloud"]
    assert cfg.model == "builtin:llama-tiny"
    assert cfg.emulation is not None and cfg.emulation.links


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "    trustd: true\n", "c.yaml:6: nodes.0.trustd: unknown key (allowed: id, trusted"),
        (MINIMAL + "extra_section: 1\n", "c.yaml:6: extra_section: unknown key"),
        (MINIMAL.replace("trusted: true", "trusted: maybe"), "c.yaml:5: nodes.0.trusted:"),
        (MINIMAL + "    memory: lots\n", "c.yaml:6: nodes.0.memory: 'lots' is not a size"),
        (
            MINIMAL + "thresholds:\n  latency_ms: -3\n",
            "c.yaml:7: thresholds.latency_ms: Input should be greater",
        ),
        (
            MINIMAL + "links:\n  - {a: device, b: mec9, bandwidth_mbps: 1, rtt_ms: 1}\n",
            "c.yaml:7: links.0.b: link names unknown node 'mec9'",
        ),
        (
            MINIMAL + "links:\n  pairs:\n    - {a: device, b: ghost, bandwidth_mbps: 1, rtt_ms: 1}\n",
            "c.yaml:8: links.pairs.0.b: link names unknown node 'ghost'",
        ),
        (MINIMAL + "  - id: device\n", "c.yaml:6: nodes.1.id: node id 'device' is declared twice"),
        (MINIMAL + "  - id: b\n    source: true\n", "c.yaml:7: nodes.1.source: exactly one node"),
        (
            MINIMAL + "emulation:\n  nodes:\n    devic: {speed_factor: 2}\n",
            "c.yaml:8: emulation.nodes.devic: emulation names unknown node 'devic'",
        ),
        (
            MINIMAL + "emulation:\n  nodes:\n    device: {speed_factor: 0}\n",
            "c.yaml:8: emulation.nodes.device.speed_factor:",
        ),
        (
            MINIMAL + "privacy:\n  blocks: [embedding, lm_head]\n",
            "c.yaml:7: privacy.blocks.1: block 'lm_head'",
        ),
        ("nodes:\n  - id: device\n    source: true\n", "c.yaml:1: model: missing required key"),
        ("model: x\nnodes: [\n", "c.yaml:3: not valid YAML"),
        ("- just a list\n", "c.yaml:1: a cluster file is a YAML mapping"),
    ],
)
def test_errors_name_key_and_line(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected), error_of(text)


def test_links_accept_default_and_pairs() -> None:
    cfg = parse_cluster(
        MINIMAL
        + "  - id: mec1\nlinks:\n  default: {bandwidth_mbps: 50, rtt_ms: 40}\n"
        + "  pairs:\n    - {a: device, b: mec1, bandwidth_mbps: 400, rtt_ms: 2}\n"
    )
    assert cfg.links.default is not None and cfg.links.default.rtt_ms == 40
    assert cfg.links.pairs[0].bandwidth_mbps == 400


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read cluster file"):
        load_cluster(tmp_path / "nope.yaml")


@given(
    n=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(["B", "KiB", "MiB", "GiB", "KB", "MB", "GB"]),
)
def test_sizes_parse_in_binary_and_decimal_units(n: int, unit: str) -> None:
    factor = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}[
        unit
    ]
    assert parse_bytes(f"{n}{unit}") == n * factor
    assert parse_bytes(f"{n} {unit.lower()}") == n * factor


def test_the_cluster_file_documented_in_docs_running_validates() -> None:
    text = (Path(__file__).parents[2] / "docs" / "running.md").read_text()
    block = text.split("## The cluster file", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    cfg = parse_cluster(block, "docs/running.md")
    assert cfg.emulation is not None and cfg.emulation.nodes["device"].load_trace
