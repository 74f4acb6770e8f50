"""Runs a scenario once per mode on a fresh local cluster: warm up, open-loop load + disturbances, measure.

For each mode: start a LocalCluster (the mode's orchestrator flags), send a few warm-up requests,
then at t = 0 start the open-loop load and the timed events together, sample node utilisation and
follow the gateway's event log; finally stop every process by PID (always) and summarise.
Every mode gets the same cluster, the same requests at the same times and the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesplit.evaluation.disturbances import RESTART_TIMEOUT_S, Disturbances, EmulationState
from edgesplit.evaluation.modes import mode_setup
from edgesplit.evaluation.scenario import Scenario
from edgesplit.transport.node_admin import NodeAdmin

START_TIMEOUT_S = 240.0
MONITOR_INTERVAL_S = 1.0
SAMPLE_INTERVAL_S = 1.0
WARMUP_REQUESTS = 3

STOP_GRACE_S = 2.0
"""After the measurement nothing needs a graceful exit: SIGKILL what has not stopped by then."""

ProgressFn = Callable[[str, str, int, int], None]
"""``(mode, phase, done, total)``; phases in order: starting, warm-up, load, drain (the last request
has been sent; waiting for the stragglers), stopping, done."""
NarrateFn = Callable[[str, float, str], None]
"""``(mode, t_s, line)``: an event applied or an orchestrator decision, as it happens."""


@dataclass
class ModeRun:
    """What one mode's run gathered besides the request records."""

    utilization: list[float] = field(default_factory=list)
    reconfigurations: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    initial_plan: dict[str, Any] = field(default_factory=dict)


def run_scenario(
    scenario: Scenario,
    modes: list[str],
    out_dir: Path,
    *,
    progress: ProgressFn | None = None,
    narrate: NarrateFn | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every mode in turn; returns ``(ModeResult by mode, Timeline by mode)``. Logs go to out_dir/logs."""
    from edgesplit.cluster.roles import num_blocks_of
    from edgesplit.evaluation.metrics import summarize
    from edgesplit.evaluation.report import Timeline
    from edgesplit.evaluation.workload import build_schedule
    from edgesplit.model.builtin import resolve_model

    out_dir.mkdir(parents=True, exist_ok=True)
    # Several node processes share this machine's cores: one compute thread each (the children inherit
    # it), or oversubscribed thread pools would add their contention to every latency measured.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cluster = scenario.cluster()
    model_path = resolve_model(cluster.model)
    num_blocks = num_blocks_of(model_path)
    privacy_blocks = cluster.privacy.block_indices(num_blocks)
    schedule = build_schedule(scenario)
    results: dict[str, Any] = {}
    timelines: dict[str, Any] = {}
    for mode in modes:
        records, run = run_mode(
            scenario, mode, schedule, model_path, out_dir, privacy_blocks, num_blocks, progress, narrate
        )
        results[mode] = summarize(
            records,
            budget_ms=scenario.sla.budget_ms,
            duration_s=scenario.workload.duration_s,
            utilization_samples=run.utilization,
            reconfigurations=len(run.reconfigurations),
            trusted_nodes=scenario.trusted_nodes(),
            privacy_blocks=privacy_blocks,
        )
        timelines[mode] = Timeline(records, run.events, run.reconfigurations)
        if progress is not None:
            progress(mode, "done", len(records), len(schedule))
    return results, timelines


def run_mode(
    scenario: Scenario,
    mode: str,
    schedule: list[Any],
    model_path: Path,
    out_dir: Path,
    privacy_blocks: list[int],
    num_blocks: int,
    progress: ProgressFn | None = None,
    narrate: NarrateFn | None = None,
) -> tuple[list[Any], ModeRun]:
    """One mode on its own fresh cluster; every process is stopped by PID before this returns."""
    from edgesplit.cluster.launcher import LocalCluster

    cluster = scenario.cluster()
    run_dir = out_dir / "logs" / mode
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    truth_path = run_dir / "truth.json"
    state = EmulationState(cluster)
    state.truth(0.0).write(truth_path)  # static plans on it at start; the oracle follows it
    setup = mode_setup(mode, cluster, privacy_blocks, num_blocks, run_dir, truth_path)
    args = ["--interval", str(MONITOR_INTERVAL_S), *setup.orchestrator_args]
    local = LocalCluster(
        cluster, model_path, run_dir=run_dir, keep_run_dir=True, orchestrator_args=args, early_gateway=True
    )
    if progress is not None:
        progress(mode, "starting", 0, len(schedule))
    try:
        local.start(START_TIMEOUT_S)
        run = ModeRun(initial_plan=dict(local.plan))
        if narrate is not None:
            stages = ", ".join(f"{name} {s:.1f} s" for name, s in local.startup_s.items())
            narrate(mode, 0.0, f"cluster up in {sum(local.startup_s.values()):.1f} s ({stages})")
        disturbances = Disturbances(
            local, scenario.events, state, truth_path if setup.live_truth else None, None
        )
        records = asyncio.run(_drive(scenario, mode, schedule, local, disturbances, run, progress, narrate))
    finally:
        if progress is not None:
            progress(mode, "stopping", 0, len(schedule))
        local.stop(STOP_GRACE_S)
    return records, run


async def _drive(
    scenario: Scenario,
    mode: str,
    schedule: list[Any],
    local: Any,
    disturbances: Disturbances,
    run: ModeRun,
    progress: ProgressFn | None,
    narrate: NarrateFn | None,
) -> list[Any]:
    import httpx

    from edgesplit.evaluation.load import run_open_loop

    url, model = local.gateway_url, scenario.model
    timeout_s = scenario.gateway.request_timeout_s
    async with httpx.AsyncClient(timeout=30.0) as http:
        if progress is not None:
            progress(mode, "warm-up", 0, WARMUP_REQUESTS)
        # Together: each only has to make every node of the plan run its blocks once before t = 0.
        await asyncio.gather(
            *(_warm_up(http, url, model, schedule[i % len(schedule)]) for i in range(WARMUP_REQUESTS))
        )
        if progress is not None:
            progress(mode, "warm-up", WARMUP_REQUESTS, WARMUP_REQUESTS)
        seq = await _last_event_seq(http, url)
        t0, t0_wall = time.monotonic(), time.time()

        def on_event(t_s: float, label: str) -> None:
            run.events.append((t_s, label))
            if narrate is not None:
                narrate(mode, t_s, f"event: {label}")

        disturbances.on_event = on_event
        done, phase = 0, "load"

        def on_done(_: Any) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(mode, phase, done, len(schedule))

        def draining() -> None:
            nonlocal phase
            phase = "drain"
            if progress is not None:
                progress(mode, phase, done, len(schedule))

        stop = asyncio.Event()
        if progress is not None:
            progress(mode, phase, 0, len(schedule))
        load = asyncio.create_task(
            run_open_loop(url, model, schedule, timeout_s=timeout_s, on_done=on_done, start_monotonic=t0)
        )
        side = [
            asyncio.create_task(disturbances.run(t0)),
            asyncio.create_task(_sample_utilization(local, stop, run)),
            asyncio.create_task(_follow_events(http, url, seq, t0_wall, stop, run, mode, narrate)),
        ]
        last_send = max((r.send_at_s for r in schedule), default=0.0)
        side.append(asyncio.create_task(_at(t0 + last_send, draining)))
        try:
            records = await load
            # Every event is due before the end of the load; one still under way (a node restart
            # on a busy machine) is finished rather than cut short, so the record is complete.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(side[0]), RESTART_TIMEOUT_S)
        finally:
            stop.set()
            for task in (side[0], side[-1]):
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
        await _collect_events(http, url, seq, t0_wall, run, mode, None)
    run.errors += disturbances.errors
    return list(records)


async def _at(at_monotonic: float, action: Callable[[], None]) -> None:
    await asyncio.sleep(max(0.0, at_monotonic - time.monotonic()))
    action()


async def _warm_up(http: Any, url: str, model: str, request: Any) -> None:
    """One complete request, so every node of the plan has run its blocks before t = 0."""
    body = {
        "model": model,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": 0,
        "privacy": request.privacy,
    }
    with contextlib.suppress(Exception):
        await http.post(f"{url}/v1/completions", json=body, timeout=120.0)


async def _last_event_seq(http: Any, url: str) -> int:
    events = await _events_after(http, url, 0)
    return max((int(e.get("seq", 0)) for e in events), default=0)


async def _events_after(http: Any, url: str, seq: int) -> list[dict[str, Any]]:
    resp = await http.get(f"{url}/v1/events", params={"after": seq, "follow": "false"}, timeout=10.0)
    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]


async def _follow_events(
    http: Any,
    url: str,
    seq: int,
    t0_wall: float,
    stop: asyncio.Event,
    run: ModeRun,
    mode: str,
    narrate: NarrateFn | None,
) -> None:
    """Poll the gateway's event log while the load runs (narration and reconfigurations as they come)."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            seq = await _collect_events(http, url, seq, t0_wall, run, mode, narrate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _collect_events(
    http: Any,
    url: str,
    seq: int,
    t0_wall: float,
    run: ModeRun,
    mode: str,
    narrate: NarrateFn | None,
) -> int:
    """Fold events after ``seq`` into ``run``; returns the newest seq seen."""
    seen = {int(d.get("seq", 0)) for d in run.decisions}
    for event in await _events_after(http, url, seq):
        seq = max(seq, int(event.get("seq", 0)))
        if int(event.get("seq", 0)) in seen:
            continue
        t_s = float(event.get("at", t0_wall)) - t0_wall
        run.decisions.append(event)
        if event.get("kind") == "plan_committed":
            chain = " ".join(f"{s['node']}[{s['start']}:{s['end']}]" for s in event.get("segments", []))
            run.reconfigurations.append((t_s, f"epoch {event.get('epoch')}: {chain}"))
            if narrate is not None:
                narrate(mode, t_s, f"commit: epoch {event.get('epoch')} -> {chain}")
        elif event.get("kind") == "decision" and narrate is not None and _notable(event):
            narrate(mode, t_s, f"decision: {describe_decision(event)}")
    return seq


def _notable(event: dict[str, Any]) -> bool:
    return bool(event.get("triggers")) or event.get("action") == "reconfigure"


def describe_decision(event: dict[str, Any]) -> str:
    """``latency(…) -> reconfigure (migrate on latency) [committed]`` from a decision's JSON."""
    triggers = ",".join(
        f"{t['kind']}({t['subject']})" if t.get("subject") else str(t["kind"])
        for t in event.get("triggers", [])
    )
    head = f"{triggers or 'no trigger'} -> {event.get('action')}"
    return f"{head} ({event.get('reason', '')}) [{event.get('outcome', '')}]"


async def _sample_utilization(local: Any, stop: asyncio.Event, run: ModeRun) -> None:
    """Every second: mean over live nodes of the share of time each spent executing steps (Δbusy/Δt)."""
    tls = getattr(local, "admin_tls", None)
    last: dict[str, tuple[float, float]] = {}
    admins: dict[str, NodeAdmin] = {}
    try:
        while not stop.is_set():
            shares = []
            for node, address in local.addresses.items():
                admin = admins.get(node)
                if admin is None:
                    admin = admins[node] = NodeAdmin(address, tls)
                try:
                    snap = await admin.telemetry(2.0)
                except Exception:
                    last.pop(node, None)  # down, or restarted: start its counters over
                    await admin.close()
                    admins.pop(node, None)
                    continue
                prev = last.get(node)
                last[node] = (snap.uptime_s, snap.busy_s_total)
                if prev is not None and snap.uptime_s > prev[0] and snap.busy_s_total >= prev[1]:
                    shares.append(min(1.0, (snap.busy_s_total - prev[1]) / (snap.uptime_s - prev[0])))
            if shares:
                run.utilization.append(sum(shares) / len(shares))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)
    finally:
        await asyncio.gather(*(a.close() for a in admins.values()), return_exceptions=True)
