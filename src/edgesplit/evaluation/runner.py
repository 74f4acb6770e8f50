"""Runs a scenario once per mode on a fresh local cluster: warm up, open-loop load + disturbances, measure.

For each mode: a LocalCluster (the mode's orchestrator flags; started with the next mode's, which
waits paused), a few warm-up requests, then at t = 0 the open-loop load and the timed events together
while node utilisation is sampled and the gateway's event log followed; finally every process is
stopped by PID (always) and the run summarised.
Every mode gets the same cluster, the same requests at the same times and the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.evaluation.disturbances import RESTART_TIMEOUT_S, Disturbances, EmulationState
from edgesplit.evaluation.event_log import collect_events, follow_events, last_event_seq
from edgesplit.evaluation.modes import mode_setup
from edgesplit.evaluation.scenario import Scenario

START_TIMEOUT_S = 240.0
MONITOR_INTERVAL_S = 1.0
SAMPLE_INTERVAL_S = 1.0
WARMUP_REQUESTS = 3
START_AHEAD = 2
"""Clusters started at once: the next mode's starts with the current one's, then waits paused."""

STOP_GRACE_S = 2.0
"""After the measurement nothing needs a graceful exit: SIGKILL what has not stopped by then."""

ProgressFn = Callable[[str, str, int, int], None]
"""``(mode, phase, done, total)``; phases in order: starting, waiting (started ahead, paused until
its turn), warm-up, load, drain (the last request has been sent; waiting for the stragglers),
stopping, done. Called from start-up threads too."""
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
    """Every mode in turn; returns ``(ModeResult by mode, Timeline by mode)``. Logs go to out_dir/logs.

    Clusters start ``START_AHEAD`` modes at a time (start-up dominates a short run on a few cores);
    every cluster but the one measured next is paused (SIGSTOP) as soon as it is ready and resumed
    only when its turn comes, so no measurement shares the machine with another cluster.
    """
    from edgesplit.cluster.roles import num_blocks_of
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
    for first in range(0, len(modes), START_AHEAD):
        group = [
            ModeCluster.prepare(scenario, mode, model_path, out_dir, privacy_blocks, num_blocks)
            for mode in modes[first : first + START_AHEAD]
        ]
        # Children die with the thread that started them (PR_SET_PDEATHSIG): the start-up threads
        # must outlive the group's clusters, so the pool closes only after every one is stopped.
        with ThreadPoolExecutor(len(group), thread_name_prefix="edgesplit-start") as pool:
            _run_group(pool, group, scenario, schedule, privacy_blocks, results, timelines, progress, narrate)
    return results, timelines


def _run_group(
    pool: ThreadPoolExecutor,
    group: list[ModeCluster],
    scenario: Scenario,
    schedule: list[Any],
    privacy_blocks: list[int],
    results: dict[str, Any],
    timelines: dict[str, Any],
    progress: ProgressFn | None,
    narrate: NarrateFn | None,
) -> None:
    """Start the group's clusters together, then run and summarise each mode in turn; always stop all."""
    from edgesplit.evaluation.metrics import summarize
    from edgesplit.evaluation.report import Timeline

    try:
        _start_together(pool, group, len(schedule), progress, narrate)
        for ready in group:
            records, run = ready.run(scenario, schedule, progress, narrate)
            results[ready.mode] = summarize(
                records,
                budget_ms=scenario.sla.budget_ms,
                duration_s=scenario.workload.duration_s,
                utilization_samples=run.utilization,
                reconfigurations=len(run.reconfigurations),
                trusted_nodes=scenario.trusted_nodes(),
                privacy_blocks=privacy_blocks,
            )
            timelines[ready.mode] = Timeline(records, run.events, run.reconfigurations)
            if progress is not None:
                progress(ready.mode, "done", len(records), len(schedule))
    finally:
        for waiting in group:  # idempotent for those already stopped; by PID, paused or not
            waiting.local.stop(STOP_GRACE_S)


@dataclass
class ModeCluster:
    """One mode's cluster (not started yet), its emulation state and its orchestrator set-up."""

    mode: str
    local: LocalCluster
    state: EmulationState
    truth_path: Path
    live_truth: bool

    @classmethod
    def prepare(
        cls,
        scenario: Scenario,
        mode: str,
        model_path: Path,
        out_dir: Path,
        privacy_blocks: list[int],
        num_blocks: int,
    ) -> ModeCluster:
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
            cluster,
            model_path,
            run_dir=run_dir,
            keep_run_dir=True,
            orchestrator_args=args,
            early_gateway=True,
        )
        return cls(mode, local, state, truth_path, setup.live_truth)

    def run(
        self,
        scenario: Scenario,
        schedule: list[Any],
        progress: ProgressFn | None,
        narrate: NarrateFn | None,
    ) -> tuple[list[Any], ModeRun]:
        """Resume the started cluster, warm up, load + events, measure; then stop it by PID."""
        self.local.resume()
        try:
            run = ModeRun(initial_plan=dict(self.local.plan))
            truth = self.truth_path if self.live_truth else None
            disturbances = Disturbances(self.local, scenario.events, self.state, truth, None)
            records = asyncio.run(
                _drive(scenario, self.mode, schedule, self.local, disturbances, run, progress, narrate)
            )
        finally:
            if progress is not None:
                progress(self.mode, "stopping", 0, len(schedule))
            self.local.stop(STOP_GRACE_S)
        return records, run


def _start_together(
    pool: ThreadPoolExecutor,
    group: list[ModeCluster],
    total: int,
    progress: ProgressFn | None,
    narrate: NarrateFn | None,
) -> None:
    """Start every cluster of ``group`` at once; all but the first pause as soon as they are ready.
    Raises the first start-up failure (the caller stops every cluster of the group)."""

    def start(index: int, ready: ModeCluster) -> None:
        if progress is not None:
            progress(ready.mode, "starting", 0, total)
        ready.local.start(START_TIMEOUT_S)
        if index > 0:
            ready.local.pause()
        if narrate is not None:
            stages = ", ".join(f"{name} {s:.1f} s" for name, s in ready.local.startup_s.items())
            paused = "; paused until its turn" if index > 0 else ""
            narrate(
                ready.mode,
                0.0,
                f"cluster up in {sum(ready.local.startup_s.values()):.1f} s ({stages}){paused}",
            )
        if index > 0 and progress is not None:
            progress(ready.mode, "waiting", 0, total)

    futures = [pool.submit(start, i, ready) for i, ready in enumerate(group)]
    # This process's own data-plane client pulls in torch (seconds of CPU): load it now, while the
    # clusters start, rather than before them or during a measurement.
    import edgesplit.transport.node_admin  # noqa: F401

    for future in futures:
        future.result()


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
        seq = await last_event_seq(http, url)
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
            asyncio.create_task(follow_events(http, url, seq, t0_wall, stop, run, mode, narrate)),
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
        await collect_events(http, url, seq, t0_wall, run, mode, None)
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


async def _sample_utilization(local: Any, stop: asyncio.Event, run: ModeRun) -> None:
    """Every second: mean over live nodes of the share of time each spent executing steps (Δbusy/Δt)."""
    from edgesplit.transport.node_admin import NodeAdmin

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
