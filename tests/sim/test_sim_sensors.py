"""DESIGN §3 rule 1 in the simulator: the controller is fed measurements that differ from the truth by
the noise process — never the truth itself — and with the noise switched off they would equal it."""

from __future__ import annotations

import math
import statistics

from sim_world import make_blocks, make_scenario, make_world, run_mode

from edgesplit.orchestrator.controller_settings import MonitoringInputs
from edgesplit.orchestrator.profiler import link_key
from edgesplit.sim.sensors import NoiseSettings
from edgesplit.sim.truth import TrueCluster
from edgesplit.sim.world import SimSettings

NOISE = NoiseSettings()


def _probe_errors(
    inputs: list[tuple[float, MonitoringInputs]], truth: TrueCluster
) -> tuple[list[float], list[float]]:
    """log(measured / true) of every probe RTT, and measured / true of every probe bandwidth."""
    rtt, bandwidth = [], []
    for _, cycle in inputs:
        for obs in cycle.links:
            if obs.rtt_s is None or obs.bandwidth_bps is None:
                continue  # an observed activation transfer, not a probe
            true = truth.links[link_key(obs.a, obs.b)]
            rtt.append(math.log(obs.rtt_s / true.rtt_s))
            bandwidth.append(obs.bandwidth_bps / true.bandwidth_bps)
    return rtt, bandwidth


LOADED = [("mec2: {speed_factor: 0.8}", "mec2: {speed_factor: 0.8, background_load: 0.3}")]


def test_controller_inputs_differ_from_truth_by_the_noise_process() -> None:
    _, run = run_mode(make_world(None, 20.0, seed=5, edits=LOADED), "adaptive", keep_inputs=True)
    truth = TrueCluster(make_scenario(edits=LOADED).cluster(), make_blocks())  # nothing changes in this run
    rtt, bandwidth = _probe_errors(run.inputs, truth)
    assert len(rtt) > 100
    assert all(e != 0.0 for e in rtt)
    assert 0.5 * NOISE.rtt_sigma < statistics.stdev(rtt) < 1.5 * NOISE.rtt_sigma
    assert abs(statistics.mean(rtt)) < 0.5 * NOISE.rtt_sigma
    # Bandwidth probes only ever err low, as the live probes do.
    assert all(r < 1.0 for r in bandwidth) and statistics.mean(bandwidth) > 1 - 3 * NOISE.bandwidth_sigma
    loads = [
        (r.node_id, r.background)
        for _, cycle in run.inputs
        for r in cycle.reports
        if r.background is not None
    ]
    errors = [load - 0.3 for node, load in loads if node == "mec2"]  # away from the clamp at 0
    assert len(errors) > 10 and all(e != 0.0 for e in errors)
    assert 0.5 * NOISE.utilization_sigma < statistics.stdev(errors) < 1.5 * NOISE.utilization_sigma
    latencies = [lat.latency_s for _, cycle in run.inputs for lat in cycle.latencies]
    true_steps = sorted(lat for _, lat, _ in run.steps)
    assert latencies and not set(latencies) & set(true_steps)


def test_without_noise_the_inputs_are_the_truth() -> None:
    """The control of the test above: it is the noise process, nothing else, that separates them."""
    quiet = NoiseSettings(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    world = make_world(None, 10.0, settings=SimSettings(noise=quiet))
    _, run = run_mode(world, "adaptive", keep_inputs=True)
    truth = TrueCluster(make_scenario().cluster(), make_blocks())
    rtt, bandwidth = _probe_errors(run.inputs, truth)
    assert rtt and all(abs(e) < 1e-12 for e in rtt) and all(abs(r - 1.0) < 1e-12 for r in bandwidth)
    measured = sorted(lat.latency_s for _, cycle in run.inputs for lat in cycle.latencies)
    true_steps = [lat for _, lat, _ in run.steps]
    assert measured and set(measured) <= set(true_steps)


def test_the_controller_holds_no_reference_to_the_truth() -> None:
    from edgesplit.sim.engine import ClusterSim

    sim = ClusterSim(make_world(None, 5.0), "adaptive")
    sim.run()
    seen: set[int] = set()

    def reaches_truth(obj: object, depth: int = 0) -> bool:
        if id(obj) in seen or depth > 6:
            return False
        seen.add(id(obj))
        if obj is sim.truth or obj is sim.nodes or obj is sim.sensors:
            return True
        children = vars(obj).values() if hasattr(obj, "__dict__") else ()
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, list | tuple | set | frozenset):
            children = obj
        return any(reaches_truth(c, depth + 1) for c in children)

    assert not reaches_truth(sim.core)
