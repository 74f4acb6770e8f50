"""Scaling a scenario up: MEC replicas with varied truth, the same declared facts, events untouched;
and the planner and controller running at that scale."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_world import COLLAPSE, make_blocks, make_scenario, run_mode

from edgesplit.errors import ScenarioError
from edgesplit.evaluation.scenario import LinkEvent
from edgesplit.orchestrator.triggers import active_links
from edgesplit.sim.run import prepare_world
from edgesplit.sim.scale import mec_templates, scale_scenario
from edgesplit.sim.world import SimSettings, build_world

BASE = make_scenario(COLLAPSE)


@settings(max_examples=25, deadline=None)
@given(nodes=st.integers(min_value=4, max_value=60), seed=st.integers(min_value=0, max_value=2**16))
def test_scaled_scenario_has_n_nodes_replicating_mec_templates(nodes: int, seed: int) -> None:
    scaled = scale_scenario(BASE, nodes, seed)
    ids = [n.id for n in scaled.nodes]
    assert len(ids) == nodes == len(set(ids))
    assert [n.id for n in scaled.nodes if n.source] == ["device"]
    assert scaled.events == BASE.events and scaled.workload == BASE.workload
    assert mec_templates(BASE) == ["mec1", "mec2"]  # the cloud is not replicated
    emulation = scaled.emulation
    assert emulation is not None
    for node in scaled.nodes[4:]:
        template = node.id.split("-r")[0]
        assert template in ("mec1", "mec2") and node.trusted and node.memory == BASE.node(template).memory
        ratio = emulation.nodes[node.id].speed_factor / BASE.emulation.nodes[template].speed_factor  # type: ignore[union-attr]
        assert 0.6 <= ratio <= 1.4
        peers = {lk.b for lk in scaled.links.pairs if lk.a == node.id}
        assert {"device", "cloud", "mec1", "mec2"} - {template} <= peers
    assert scale_scenario(BASE, nodes, seed) == scaled  # deterministic


def test_too_few_nodes_is_an_error_naming_the_count() -> None:
    with pytest.raises(ScenarioError, match="already has 4 nodes"):
        scale_scenario(BASE, 3)


def test_controller_runs_a_scaled_cluster_and_answers_a_collapse_of_its_first_hop() -> None:
    scaled = scale_scenario(make_scenario(None, 20.0), 24, seed=1)
    _, quiet = run_mode(build_world(scaled, make_blocks()), "adaptive")
    first_hop = next(n for n in quiet.plans[0][1].assignment if n != "device")
    collapse = LinkEvent(at_s=10, kind="link", a="device", b=first_hop, bandwidth_mbps=5, rtt_ms=160)
    # Same seed and nothing different before t = 10 s: the same initial plan, now losing its first hop.
    outcome, run = run_mode(
        build_world(scaled.model_copy(update={"events": [collapse]}), make_blocks()), "adaptive"
    )
    assert run.plans[0][1].assignment == quiet.plans[0][1].assignment
    result = outcome.results["adaptive"]
    assert result.privacy_violations == 0 and result.completed == result.requests
    moved = [p for t, p in run.plans if t > 10.0]
    assert moved and not any(
        {a, b} == {"device", first_hop} for a, b in active_links(moved[0].assignment, "device")
    )
    assert not quiet.reconfigurations  # without the collapse, 24 noisy nodes cause no churn


def test_probe_rotation_bounds_each_cycle_and_covers_every_pair() -> None:
    world = prepare_world(
        make_scenario(None, 10.0), make_blocks(), nodes=12, settings=SimSettings(probe_peers=2)
    )
    _, run = run_mode(world, "adaptive", keep_inputs=True)
    per_cycle = [
        {tuple(sorted((o.a, o.b))) for o in inputs.links if o.bandwidth_bps is not None}
        for _, inputs in run.inputs
    ]
    assert all(0 < len(pairs) <= 12 * 2 for pairs in per_cycle)
    covered = set().union(*per_cycle[:6])  # 11 peers each, 2 a cycle: all of them within 6 cycles
    assert len(covered) == 12 * 11 // 2
