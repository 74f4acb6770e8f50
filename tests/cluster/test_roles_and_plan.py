"""What each process gets from the cluster file, and the placeholder's initial plan."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.cluster.bootstrap import ModelFacts, initial_plan, simple_plan
from edgesplit.cluster.config import ClusterConfig
from edgesplit.cluster.launcher import orchestrator_view
from edgesplit.cluster.loader import load_cluster, parse_cluster
from edgesplit.cluster.roles import gateway_config, node_config
from edgesplit.node.config import NodeConfig

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"

# Sizes of the built-in llama-tiny (64 hidden, 4 layers, 512 vocab, fp32), written out independently.
TINY = ModelFacts(
    names=("embed", "layer.0", "layer.1", "layer.2", "layer.3", "head"),
    param_bytes=(131072, 201216, 201216, 201216, 201216, 131328),
    kv_bytes_per_token=(0, 512, 512, 512, 512, 0),
    out_bytes=(256, 256, 256, 256, 256, 4),
    decode_flops=(0, 100_000, 100_000, 100_000, 100_000, 65_536),
)


@pytest.fixture(scope="module")
def cluster() -> ClusterConfig:
    return load_cluster(EXAMPLE)


def test_node_configs_are_valid_node_agent_configs_with_links_both_ways(cluster: ClusterConfig) -> None:
    configs = {
        n.id: NodeConfig.model_validate(node_config(cluster, n.id, Path("/m"), "127.0.0.1:0", None))
        for n in cluster.nodes
    }
    device, cloud = configs["device"].emulation, configs["cloud"].emulation
    assert device.speed_factor == 0.5 and cloud.speed_factor == 4.0
    assert device.links["cloud"].rtt_ms == 40 and cloud.links["device"].rtt_ms == 40
    assert (
        device.links["mec1"].bandwidth_mbps == 400
        and configs["mec1"].emulation.links["device"].bandwidth_mbps == 400
    )


def test_gateway_runs_on_the_source_and_shapes_its_links(cluster: ClusterConfig, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"num_hidden_layers": 4}')
    gw = gateway_config(
        cluster, tmp_path, {"device": "127.0.0.1:5", "mec1": "127.0.0.1:6", "cloud": "127.0.0.1:7"}
    )
    assert gw.source_node == "device"
    assert gw.privacy_blocks == [0, 1, 5]
    assert gw.emulated_links["cloud"].rtt_ms == 40
    assert {n.id: n.trusted for n in gw.nodes} == {"device": True, "mec1": True, "cloud": False}
    assert gw.model_name == "builtin:llama-tiny"


def test_orchestrator_never_sees_the_emulation_section(cluster: ClusterConfig) -> None:
    view = orchestrator_view(
        cluster, {"device": "127.0.0.1:1", "mec1": "127.0.0.1:2", "cloud": "127.0.0.1:3"}
    )
    assert "emulation" not in view
    assert [n["address"] for n in view["nodes"]] == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    again = ClusterConfig.model_validate(view)
    assert again.emulation is None and again.source.id == "device"


def test_example_plan_keeps_privacy_blocks_trusted_and_fits_memory(cluster: ClusterConfig) -> None:
    plan = initial_plan(cluster, TINY, [0, 1, 5])
    trusted = {n.id for n in cluster.nodes if n.trusted}
    assert {plan.assignment[b] for b in (0, 1, 5)} <= trusted
    for node in cluster.nodes:
        held = sum(TINY.param_bytes[b] for b, n in enumerate(plan.assignment) if n == node.id)
        assert held <= node.memory
    # The device holds 512 KiB: not the whole model (1.07 MiB), so the chain leaves it.
    assert len(set(plan.assignment)) > 1
    segments = plan.segments()
    assert segments[0][1] == 0 and segments[-1][2] == 6
    assert all(a[2] == b[1] for a, b in itertools.pairwise(segments))


@settings(max_examples=15, deadline=None)
@given(
    speeds=st.lists(st.floats(min_value=0.1, max_value=10), min_size=3, max_size=3),
    rtts=st.lists(st.floats(min_value=0, max_value=200), min_size=3, max_size=3),
)
def test_plan_does_not_depend_on_emulation(
    cluster: ClusterConfig, speeds: list[float], rtts: list[float]
) -> None:
    assert cluster.emulation is not None
    emulation = cluster.emulation.model_copy(deep=True)
    for node_id, speed in zip(("device", "mec1", "cloud"), speeds, strict=True):
        emulation.nodes[node_id].speed_factor = speed
    for link, rtt in zip(emulation.links, rtts, strict=True):
        link.rtt_ms = rtt
    changed = cluster.model_copy(update={"emulation": emulation})
    # The planner may return either of several equal-cost optima, so compare what it predicts.
    assert initial_plan(changed, TINY, [0, 1, 5]).cost == initial_plan(cluster, TINY, [0, 1, 5]).cost


def test_simple_plan_puts_privacy_on_source_and_the_rest_on_the_biggest_node() -> None:
    cfg = parse_cluster(
        "model: m\nnodes:\n  - {id: phone, source: true, trusted: true, memory: 1GiB}\n"
        "  - {id: mec, trusted: true, memory: 8GiB}\n  - {id: cloud, memory: 64GiB}\n"
    )
    plan = simple_plan(cfg, TINY, [0, 1, 5])
    assert plan.assignment == ("phone", "phone", "cloud", "cloud", "cloud", "phone")


def test_one_node_cluster_plans_everything_on_it() -> None:
    cfg = parse_cluster("model: m\nnodes:\n  - {id: solo, source: true, trusted: true}\n")
    assert set(initial_plan(cfg, TINY, [0, 1, 5]).assignment) == {"solo"}
    assert set(simple_plan(cfg, TINY, [0, 1, 5]).assignment) == {"solo"}


def test_model_facts_of_llama_tiny_match_its_shape() -> None:
    """hidden 64, 4 layers, SwiGLU width 176, vocab 512, fp32, untied head (the `tiny` preset)."""
    from edgesplit.cluster.bootstrap import model_facts
    from edgesplit.model.builtin import resolve_model

    facts = model_facts(resolve_model("builtin:llama-tiny"))
    h, ffn, vocab, f32 = 64, 176, 512, 4
    layer = (4 * h * h + 3 * h * ffn + 2 * h) * f32  # q,k,v,o + gate,up,down + two RMSNorm weights
    assert facts.param_bytes == (vocab * h * f32, layer, layer, layer, layer, (vocab * h + h) * f32)
    assert facts.kv_bytes_per_token == (0, 2 * h * f32, 2 * h * f32, 2 * h * f32, 2 * h * f32, 0)
    assert facts.out_bytes == (h * f32,) * 5 + (4,)
    assert facts.param_bytes == TINY.param_bytes
