"""The orchestrator process's input mapping: a node's cumulative telemetry → per-interval
``NodeTelemetry``; the gateway's observations → latencies, hop transfers and demand; one-line events."""

from __future__ import annotations

import pytest

from edgesplit.orchestrator.events import Action, DecisionEvent, Outcome, TriggerFiring, TriggerKind, describe
from edgesplit.orchestrator.observations import NodeSeen, fold_report, gateway_inputs, to_node_telemetry
from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import CapacityProfiler, NodeTelemetry
from edgesplit.wire.messages import SegmentStats, TelemetrySnapshot


def snap(
    uptime: float, busy: float, seq: int, epochs: tuple[int, ...], bytes_in: int = 0
) -> TelemetrySnapshot:
    return TelemetrySnapshot(
        node_id="mec1",
        cpu_utilization=0.4,
        rss_bytes=10,
        gpu_utilization=-1.0,
        segments=(SegmentStats(2, 4, 0.0, 0.01, 5, 1),),
        activation_bytes_in=bytes_in,
        epochs=epochs,
        uptime_s=uptime,
        busy_s_total=busy,
        seq=seq,
        mem_available_bytes=99,
        block_decode_s={2: 0.005, 3: 0.005},
    )


def test_cumulative_counters_become_interval_figures() -> None:
    before = snap(10.0, 2.0, 7, (1,), bytes_in=1000)
    now = snap(11.5, 2.6, 8, (1, 2), bytes_in=4000)
    t = to_node_telemetry(now, before)
    # 1.5 s between the reports, 0.6 s of it busy: the node's own work is 40 % of the interval.
    assert t.interval_s == 1.5 and abs(t.busy_s - 0.6) < 1e-12
    assert t.epoch == 2  # the newest epoch it holds (prepared counts)
    assert t.loaded_blocks == frozenset({2, 3})
    assert t.activation_bytes == 3000 and t.seq == 8 and t.mem_available_bytes == 99
    first = to_node_telemetry(before, None)  # the first report covers the whole uptime
    assert first.interval_s == 10.0 and first.busy_s == 2.0


def test_gateway_observations_become_latencies_links_and_demand() -> None:
    blocks = [BlockCost(f"b{i}", 0.001, 100, out_bytes=1000 * (i + 1)) for i in range(4)]
    plan = Plan(3, ("device", "device", "mec1", "mec1"))
    hops = [
        {"node": "device", "send_s": 0.02, "compute_s": 0.0},
        {"node": "mec1", "send_s": 0.001, "compute_s": 0.0},
    ]
    observed = {
        "steps": [
            {"epoch": 3, "latency_s": 0.5, "tokens": 10, "context": 10, "hops": hops},  # prefill
            {"epoch": 3, "latency_s": 0.05, "tokens": 1, "context": 11, "hops": hops},
            {"epoch": 2, "latency_s": 0.07, "tokens": 1, "context": 30, "hops": hops[:1]},  # old epoch
        ],
        "live_sessions": 2,
    }
    latencies, links, workload = gateway_inputs(observed, plan, blocks, "device", 2.0)
    assert [(o.latency_s, o.epoch) for o in latencies] == [(0.05, 3), (0.07, 2)]  # decode steps only
    # device's segment ends at block 1 (2000 bytes/token out); mec1 answers the gateway on device.
    device_mec1 = [(o.a, o.b, o.transfer_bytes, o.transfer_s) for o in links if o.a == "device"]
    assert device_mec1 == [("device", "mec1", 20000, 0.02), ("device", "mec1", 2000, 0.02)]
    assert {(o.a, o.b) for o in links} == {("device", "mec1"), ("mec1", "device")}
    assert workload.tokens_per_s == 12 / 2.0 and workload.live_sessions == 2
    assert workload.mean_context_tokens == (10 + 11 + 30) / 3


def test_one_line_per_event_names_trigger_outcome_and_chain() -> None:
    event = DecisionEvent(
        5.0,
        1,
        Action.RECONFIGURE,
        "node lost",
        triggers=(TriggerFiring(TriggerKind.NODE_LOSS, 1, 0, "mec1"),),
        new_epoch=2,
        outcome=Outcome.COMMITTED,
        phases={"prepare": 0.25},
    )
    line = describe(event)
    assert "\n" not in line
    assert line.startswith("decision: epoch 1 reconfigure -> epoch 2 [committed] node_loss(mec1) node lost")
    assert "prepare=0.250s" in line


def test_a_node_holding_only_zero_work_blocks_has_no_speed_yet() -> None:
    """An embedding lookup has no reference FLOPs: its measured time cannot give a speed, and a speed
    of 0 would make the planner problem invalid (seen live: device held only block 0)."""
    prof = CapacityProfiler({0: 0.0, 1: 0.002})
    prof.add_node_report(NodeTelemetry("device", 1, 0.1, 1.0, 0.1, block_decode_s={0: 0.0004}), 0.0)
    assert prof.snapshot(0.0).nodes["device"].speed is None
    prof.add_node_report(NodeTelemetry("device", 2, 0.1, 1.0, 0.1, block_decode_s={0: 0.0004, 1: 0.001}), 1.0)
    assert prof.snapshot(1.0).nodes["device"].speed == pytest.approx(2.0)  # block 1: 2 ms of work in 1 ms


def test_a_restarted_node_is_heard_at_once() -> None:
    """A node process that restarts counts its reports from 1 again: its first report must be folded
    in (not dropped as older than the last one of the previous process) and cover its new uptime."""
    seen = NodeSeen()
    profiler = CapacityProfiler({2: 0.005, 3: 0.005})
    for i in range(1, 31):  # 30 reports from the first process
        report, _ = fold_report(seen, snap(float(i), 0.1 * i, i, (1,)))
        assert profiler.add_node_report(report, float(i)) and not report.restarted
    report, _ = fold_report(seen, snap(2.0, 0.5, 1, ()))  # the new process, 2 s old
    assert report.restarted and report.seq == 1
    assert report.interval_s == 2.0 and report.busy_s == 0.5
    assert profiler.add_node_report(report, 40.0)
    # Its next report is an ordinary one again; a duplicate of it is still refused.
    report, _ = fold_report(seen, snap(3.0, 0.6, 2, ()))
    assert not report.restarted and profiler.add_node_report(report, 41.0)
    assert not profiler.add_node_report(report, 41.5)
