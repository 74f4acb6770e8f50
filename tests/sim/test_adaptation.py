"""The simulator drives the real controller: it adapts to a bandwidth collapse and a node loss, static
never moves, and a quiet noisy cluster causes no churn. Asserted from the simulator's own series."""

from __future__ import annotations

from sim_world import COLLAPSE, COLLAPSE_AT_S, KILL_MEC1, make_world, mean_latency, run_mode

from edgesplit.orchestrator.triggers import active_links
from edgesplit.sim.engine import SimRun
from edgesplit.sim.world import SimSettings


def _uses_link(run: SimRun, t: float, a: str, b: str) -> bool:
    """Whether the plan serving at ``t`` sends over a–b."""
    plan = [p for at, p in run.plans if at <= t][-1]
    return any({x, y} == {a, b} for x, y in active_links(plan.assignment, "device"))


def test_same_seed_gives_identical_results_and_another_seed_other_noise() -> None:
    first = run_mode(make_world(COLLAPSE, 25.0, seed=3), "adaptive", keep_inputs=True)
    again = run_mode(make_world(COLLAPSE, 25.0, seed=3), "adaptive", keep_inputs=True)
    other = run_mode(make_world(COLLAPSE, 25.0, seed=4), "adaptive", keep_inputs=True)
    assert first[0].results == again[0].results
    assert first[1].steps == again[1].steps and first[1].records == again[1].records
    assert [(t, p.assignment) for t, p in first[1].plans] == [(t, p.assignment) for t, p in again[1].plans]
    assert first[1].inputs == again[1].inputs
    assert first[1].inputs != other[1].inputs  # the seed is what fixes the noise


def test_bandwidth_collapse_moves_off_the_link_and_latency_falls_back() -> None:
    _, run = run_mode(make_world(COLLAPSE, 40.0), "adaptive")
    assert _uses_link(run, COLLAPSE_AT_S - 0.1, "device", "mec1"), "the scenario must start on device~mec1"
    after = [(t, p) for t, p in run.plans if t > COLLAPSE_AT_S]
    assert after, f"no plan committed after the collapse; decisions: {[d.reason for d in run.decisions]}"
    moved_at = after[0][0]
    assert moved_at < COLLAPSE_AT_S + 8.0  # persistence (2 cycles) + planning + prepare/commit
    assert not _uses_link(run, moved_at + 0.1, "device", "mec1")
    before = mean_latency(run, 2.0, COLLAPSE_AT_S)
    during = mean_latency(run, COLLAPSE_AT_S + 0.5, moved_at)
    recovered = mean_latency(run, moved_at + 2.0, 40.0)
    assert during > 3 * before  # the collapse really hurt
    assert recovered < 1.5 * before  # and moving off the link undid it
    assert len(run.reconfigurations) == 1  # one change, no flapping afterwards


def test_static_never_reconfigures_and_stays_slow() -> None:
    outcome, run = run_mode(make_world(COLLAPSE, 30.0), "static")
    assert outcome.results["static"].reconfigurations == 0
    assert len(run.plans) == 1 and run.plans[0][0] < 0  # the initial deployment only
    assert mean_latency(run, COLLAPSE_AT_S + 2.0, 30.0) > 3 * mean_latency(run, 2.0, COLLAPSE_AT_S)


def test_no_disturbance_with_noise_means_no_reconfiguration() -> None:
    # Longer than the controller's improvement interval (120 s), so that check runs on noisy figures too.
    outcome, run = run_mode(make_world(None, 150.0, seed=11), "adaptive")
    result = outcome.results["adaptive"]
    assert result.reconfigurations == 0, [d.reason for d in run.decisions]
    assert result.failed == 0 and result.completed == result.requests > 250


def test_node_loss_makes_the_controller_replan_without_the_node() -> None:
    outcome, run = run_mode(make_world(KILL_MEC1, 30.0), "adaptive")
    assert _uses_link(run, 9.9, "device", "mec1")
    after = [(t, p) for t, p in run.plans if t > 10.0]
    assert after and after[0][0] < 10.0 + 3.0  # urgent: no cool-down, no persistence wait
    assert all("mec1" not in p.assignment for _, p in after)
    late = [r for r in run.records if r.send_s > after[0][0] + 1.0]
    assert late and all(r.status == "ok" for r in late)
    assert outcome.results["adaptive"].privacy_violations == 0


def test_static_after_node_loss_fails_requests() -> None:
    outcome, _ = run_mode(make_world(KILL_MEC1, 30.0), "static")
    result = outcome.results["static"]
    assert result.reconfigurations == 0
    assert result.failed > 0


def test_oracle_moves_within_a_cycle_of_the_collapse() -> None:
    _, run = run_mode(make_world(COLLAPSE, 20.0), "oracle")
    after = [t for t, _ in run.plans if t >= COLLAPSE_AT_S]
    assert after and after[0] < COLLAPSE_AT_S + 1.5  # Δt = 1 s, then prepare + commit


def test_a_plan_serves_only_after_its_prepare_loaded_the_weights_and_its_commit() -> None:
    slow_disk = SimSettings(disk_read_bytes_per_s=1e6)  # 1 MB/s: loading takes seconds
    world = make_world(None, 5.0, settings=slow_disk)
    _, run = run_mode(world, "adaptive")
    t, plan = run.plans[0]
    most = max(sum(world.blocks[b].param_bytes for b in plan.blocks_on(n)) for n in plan.nodes)
    expected = -slow_disk.lead_in_s + slow_disk.prepare_base_s + most / 1e6 + slow_disk.commit_s
    assert most > 500_000 and abs(t - expected) < 1e-9
    assert min(s for s, _, _ in run.steps) >= 0  # the load starts after the deployment was live


def test_a_memory_cap_reported_by_the_node_bounds_what_the_planner_puts_there() -> None:
    capped = [("mec1: {speed_factor: 1.0}", "mec1: {speed_factor: 1.0, memory_cap: 900KB}")]
    free = run_mode(make_world(None, 5.0), "adaptive")[1].plans[0][1]
    blocks = make_world(None, 5.0).blocks
    assert sum(blocks[b].param_bytes for b in free.blocks_on("mec1")) > 900_000  # the cap matters
    _, run = run_mode(make_world(None, 5.0, edits=capped), "adaptive")
    plan = run.plans[0][1]
    assert sum(blocks[b].param_bytes for b in plan.blocks_on("mec1")) <= 900_000
    assert not [d for d in run.decisions if d.outcome.value == "aborted"]


RETURN = [*KILL_MEC1, "{at_s: 16, kind: node_return, node: mec1}"]


def test_static_redeploys_the_same_plan_on_a_node_that_came_back() -> None:
    carry_on = SimSettings(restart_resets_seq=False)  # see the next test for the live behaviour
    _, run = run_mode(make_world(RETURN, 30.0, settings=carry_on), "static")
    first = run.plans[0][1]
    assert "mec1" in first.assignment
    again = [(t, p) for t, p in run.plans if t > 16.0]
    assert again and all(p.assignment == first.assignment for _, p in again)  # nothing ever moves
    assert again[0][0] < 16.0 + 5.0  # its first report, then FixedController's settle time
    late = [r for r in run.records if r.send_s > again[0][0] + 1.0]
    lost = [r for r in run.records if 10.5 < r.send_s < 15.0]
    assert late and all(r.status == "ok" for r in late)
    assert lost and all(r.end_s > again[0][0] or r.status != "ok" for r in lost)  # served only after


def test_a_restarted_node_is_heard_again_only_once_its_report_count_passes_the_old_one() -> None:
    """Live node agents count reports from 1 after a restart and the profiler drops reports that are not
    newer: mec1 sent one report a cycle for 15 s before dying, so the orchestrator (here: the static
    baseline waiting to re-deploy) hears from it again about 15 cycles after it came back."""
    _, live_like = run_mode(make_world(RETURN, 40.0), "static")
    _, carry_on = run_mode(make_world(RETURN, 40.0, settings=SimSettings(restart_resets_seq=False)), "static")
    redeploy = [t for t, _ in live_like.plans if t > 16.0]
    prompt = [t for t, _ in carry_on.plans if t > 16.0]
    assert redeploy and prompt and redeploy[0] > prompt[0] + 10.0
