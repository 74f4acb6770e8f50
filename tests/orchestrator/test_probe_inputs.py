"""The profiler's new inputs: bandwidth a node's probes derived, the background load a node reports
apart, and the join-time profile that gives a never-used node a speed; and their mapping from
telemetry (only probe results newer than the previous report count)."""

from __future__ import annotations

import pytest

from edgesplit.orchestrator.observations import probe_observations, to_node_telemetry
from edgesplit.orchestrator.profiler import CapacityProfiler, LinkObservation, NodeTelemetry
from edgesplit.wire.messages import LinkProbeResult, TelemetrySnapshot

REF = {0: 0.0, 1: 0.010, 2: 0.010}


def test_probe_bandwidth_is_taken_as_measured_and_small_transfers_still_are_not() -> None:
    prof = CapacityProfiler(REF)
    for _ in range(3):
        prof.add_link_observation(LinkObservation("mec1", "device", 0.004, bandwidth_bps=5e6), 0.0)
    prof.add_link_observation(LinkObservation("device", "mec1", None, 2048, 0.5), 0.0)
    link = prof.snapshot(0.0).link("device", "mec1")
    assert link is not None
    assert link.bandwidth_bps == pytest.approx(5e6) and link.rtt_s == pytest.approx(0.004)


def test_a_collapse_seen_by_probes_is_believed_within_a_few_samples() -> None:
    prof = CapacityProfiler(REF)
    for _ in range(6):
        prof.add_link_observation(LinkObservation("a", "b", 0.002, bandwidth_bps=400e6), 0.0)
    seen = []
    for _ in range(6):
        prof.add_link_observation(LinkObservation("b", "a", 0.150, bandwidth_bps=5e6), 1.0)
        link = prof.snapshot(1.0).link("a", "b")
        assert link is not None and link.bandwidth_bps is not None
        seen.append(link.bandwidth_bps)
    assert min(seen[:3]) > 300e6  # a few slow probes (a busy machine delays them) are not news
    assert seen[-1] < 10e6  # most of the window agreeing is


def test_reported_background_is_divided_out_even_when_the_node_is_saturated() -> None:
    prof = CapacityProfiler(REF)
    speed, background = 2.0, 0.9
    times = {b: w / (speed * (1 - background)) for b, w in REF.items() if w}
    for seq in range(1, 4):  # busy the whole interval and 100 % CPU: utilisation − busy says nothing
        report = NodeTelemetry("mec1", seq, 1.0, 1.0, 1.0, block_decode_s=times, background=background)
        prof.add_node_report(report, 0.0)
    node = prof.snapshot(0.0).nodes["mec1"]
    assert node.speed == pytest.approx(speed)
    assert node.background_util == pytest.approx(background)


def test_the_join_profile_gives_a_speed_only_until_live_timings_exist() -> None:
    prof = CapacityProfiler(REF)
    profiled = {1: 0.010 / 4 / (1 - 0.2), 2: 0.010 / 4 / (1 - 0.2)}  # speed 4, timed at 20 % load
    for seq in (1, 2, 3):
        report = NodeTelemetry("mec2", seq, 0.0, profile_decode_s=profiled, profile_utilization=0.2)
        prof.add_node_report(report, 0.0)
    assert prof.snapshot(0.0).nodes["mec2"].speed == pytest.approx(4.0)
    live = {1: 0.010, 2: 0.010}  # serving, it measures speed 1
    for seq in range(4, 12):
        report = NodeTelemetry(
            "mec2", seq, 0.0, block_decode_s=live, profile_decode_s=profiled, profile_utilization=0.2
        )
        prof.add_node_report(report, 0.0)
    assert prof.snapshot(0.0).nodes["mec2"].speed == pytest.approx(1.0, rel=0.05)
    # No longer serving (segments released): the live speed stays, the profile does not come back.
    for seq in range(12, 20):
        prof.add_node_report(
            NodeTelemetry("mec2", seq, 0.0, profile_decode_s=profiled, profile_utilization=0.2), 0.0
        )
    assert prof.snapshot(0.0).nodes["mec2"].speed == pytest.approx(1.0, rel=0.05)


def snap(seq: int, probes: tuple[LinkProbeResult, ...]) -> TelemetrySnapshot:
    return TelemetrySnapshot(
        node_id="device",
        cpu_utilization=0.3,
        rss_bytes=1,
        gpu_utilization=-1.0,
        seq=seq,
        uptime_s=float(seq),
        link_probes=probes,
        profile_decode_s={1: 0.02},
        profile_utilization=0.1,
        background_utilization=0.25,
    )


def test_only_probe_results_newer_than_the_previous_report_become_observations() -> None:
    p1 = LinkProbeResult("mec1", 0.004, 400e6, 1, 1000)
    p2 = LinkProbeResult("mec2", 0.006, 0.0, 2, 0)
    p3 = LinkProbeResult("mec1", 0.150, 5e6, 3, 3000)
    first = probe_observations(snap(1, (p1, p2)), None)
    assert [(o.a, o.b, o.rtt_s, o.bandwidth_bps) for o in first] == [
        ("device", "mec1", 0.004, 400e6),
        ("device", "mec2", 0.006, None),  # an RTT-only round carries no bandwidth
    ]
    later = probe_observations(snap(2, (p1, p2, p3)), snap(1, (p1, p2)))
    assert [(o.b, o.bandwidth_bps) for o in later] == [("mec1", 5e6)]


def test_profile_and_background_pass_through_the_telemetry_mapping() -> None:
    t = to_node_telemetry(snap(2, ()), snap(1, ()))
    assert t.background == 0.25
    assert dict(t.profile_decode_s) == {1: 0.02} and t.profile_utilization == 0.1


def test_an_idle_node_is_judged_by_its_profile_scaled_like_the_serving_nodes() -> None:
    """Serving nodes run at half their profiled speed (contention, serving path): an idle node with
    the same profile must not look twice as fast as they are, or segments would chase that."""
    prof = CapacityProfiler(REF)
    profile = {1: 0.010, 2: 0.010}  # both profiled at speed 1
    live = {1: 0.020, 2: 0.020}  # mec1 serves at speed 0.5
    for seq in range(1, 8):
        prof.add_node_report(
            NodeTelemetry("mec1", seq, 0.0, block_decode_s=live, profile_decode_s=profile), 0.0
        )
        prof.add_node_report(NodeTelemetry("mec2", seq, 0.0, profile_decode_s=profile), 0.0)
    nodes = prof.snapshot(0.0).nodes
    assert nodes["mec1"].speed == pytest.approx(0.5, rel=0.05)
    assert nodes["mec2"].speed == pytest.approx(nodes["mec1"].speed, rel=0.05)


def test_demand_is_smoothed_over_cycles_without_tokens() -> None:
    from edgesplit.orchestrator.profiler import WorkloadObservation

    prof = CapacityProfiler(REF)
    prof.set_workload(WorkloadObservation(20.0, 3, 40.0))
    prof.set_workload(WorkloadObservation(0.0, 3, 0.0))  # a 0.2 s cycle in which no token arrived
    env = prof.snapshot(0.0)
    assert 5.0 < env.tokens_per_s < 20.0 and env.live_sessions == 3
