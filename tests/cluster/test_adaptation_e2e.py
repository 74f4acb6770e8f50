"""Adaptation on the real local cluster (processes, emulated links and load, Δt and T_cool compressed):
bandwidth collapse, anti-churn, overload without flapping, privacy on demand. The orchestrator only
sees its measurements (probes, telemetry, the gateway's observations); the tests change the emulation
at run time the way `edgesplit up`'s trace player does (SetEmulation on the node agents)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from loopback_up import kill_pids, pid_alive, wait_for

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.cluster.roles import node_emulation
from edgesplit.model.builtin import resolve_model
from edgesplit.node.config import EmulationConfig
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import TelemetrySnapshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

EXAMPLES = Path(__file__).parents[2] / "examples"
INTERVAL_S = 0.2
COOLDOWN_S = 4.0
FAST = ["--interval", str(INTERVAL_S), "--cooldown", str(COOLDOWN_S)]
MIDDLE = (2, 3, 4)  # layers 1..3: the blocks no privacy rule pins, the "middle segment"


def decisions(url: str) -> list[dict[str, Any]]:
    text = httpx.get(f"{url}/v1/events", params={"follow": "false"}, timeout=10).text
    found = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return [e for e in found if e.get("kind") == "decision"]


def commits_after(url: str, epoch: int) -> list[dict[str, Any]]:
    """Committed reconfigurations to an epoch newer than ``epoch``, oldest first."""
    return [
        e
        for e in decisions(url)
        if e["outcome"] == "committed" and e.get("new_epoch") is not None and e["new_epoch"] > epoch
    ]


def plan_of(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/plan", timeout=10).json())


EWMA_ALPHA = 0.3
"""The orchestrator's default smoothing weight (OrchestratorConfig.ewma_alpha)."""


def quartile(values: list[float]) -> float:
    """The lower quartile."""
    return statistics.quantiles(values, n=4)[0] if len(values) > 1 else values[0]


def node_of_block(plan: dict[str, Any], block: int) -> str:
    return next(s["node"] for s in plan["segments"] if s["start"] <= block < s["end"])


@dataclass
class Load:
    """Closed-loop streams (``streams`` at a time) until stopped; every token's arrival is kept."""

    url: str
    streams: int = 3
    max_tokens: int = 16
    privacy: str = "none"
    tokens: list[tuple[float, float]] = field(default_factory=list)
    """(arrival time, gap since the previous token of the same request) for every decode token."""
    done: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for i in range(self.streams):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def _run(self, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = {
                "model": "builtin:llama-tiny",
                "prompt": f"Story {i}.{n}: once upon a time",
                "max_tokens": self.max_tokens,
                "temperature": 0,
                "stream": True,
                "privacy": self.privacy,
            }
            try:
                last = None
                with httpx.stream("POST", f"{self.url}/v1/completions", json=body, timeout=90) as resp:
                    if resp.status_code != 200:
                        raise RuntimeError(f"HTTP {resp.status_code}: {resp.read()!r}")
                    for line in resp.iter_lines():
                        if not line.startswith("data: {"):
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            raise RuntimeError(str(chunk["error"]))
                        now = time.monotonic()
                        if last is not None and chunk.get("choices"):
                            with self._lock:
                                self.tokens.append((now, now - last))
                        last = now
                with self._lock:
                    self.done += 1
            except Exception as exc:  # every failure is recorded; the tests assert there are none
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def gaps_between(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [gap for at, gap in self.tokens if start <= at <= end]


class Emulation:
    """The test's hand on each node's emulation section (links and load), applied with SetEmulation."""

    def __init__(self, lc: LocalCluster) -> None:
        self.lc = lc
        self.sections = {n.id: node_emulation(lc.cluster, n.id) for n in lc.cluster.nodes}

    def _apply(self, node_ids: list[str]) -> None:
        async def main() -> None:
            for node_id in node_ids:
                admin = NodeAdmin(self.lc.addresses[node_id], self.lc.admin_tls)
                try:
                    await admin.set_emulation(EmulationConfig.model_validate(self.sections[node_id]))
                finally:
                    await admin.close()

        asyncio.run(main())

    def link(self, a: str, b: str, bandwidth_mbps: float, rtt_ms: float) -> None:
        for me, peer in ((a, b), (b, a)):
            self.sections[me]["links"][peer] = {"bandwidth_mbps": bandwidth_mbps, "rtt_ms": rtt_ms}
        self._apply([a, b])

    def load(self, node_id: str, load: float) -> None:
        self.sections[node_id]["background_load"] = load
        self._apply([node_id])

    def reset(self) -> None:
        self.sections = {n.id: node_emulation(self.lc.cluster, n.id) for n in self.lc.cluster.nodes}
        self._apply(list(self.sections))


def telemetry(lc: LocalCluster, node_id: str) -> TelemetrySnapshot:
    async def main() -> TelemetrySnapshot:
        admin = NodeAdmin(lc.addresses[node_id], lc.admin_tls)
        try:
            return await admin.telemetry()
        finally:
            await admin.close()

    return asyncio.run(main())


def start_cluster(cluster_file: str | Path, args: tuple[str, ...] = ()) -> LocalCluster:
    """The cluster of ``examples/NAME`` (or of a file's path), orchestrator flags ``args`` (default FAST)."""
    cluster = load_cluster(cluster_file if isinstance(cluster_file, Path) else EXAMPLES / cluster_file)
    keep = bool(os.environ.get("EDGESPLIT_KEEP_RUN_DIR"))  # debugging: keep the processes' logs
    flags = list(args) or FAST
    lc = LocalCluster(cluster, resolve_model(cluster.model), orchestrator_args=flags, keep_run_dir=keep)
    lc.start(240)
    return lc


def stop_cluster(lc: LocalCluster) -> None:
    pids = [c.proc.pid for c in lc.children]
    lc.stop()
    kill_pids([p for p in pids if pid_alive(p)])


@pytest.fixture(scope="module")
def adaptive() -> Iterator[LocalCluster]:
    lc = start_cluster("mec-adaptive.yaml")
    try:
        yield lc
    finally:
        stop_cluster(lc)


@pytest.fixture
def emulation(adaptive: LocalCluster) -> Iterator[Emulation]:
    emu = Emulation(adaptive)
    try:
        yield emu
    finally:
        emu.reset()


def test_anti_churn_steady_load_with_noise_makes_no_reconfiguration(adaptive: LocalCluster) -> None:
    """300 monitoring cycles (Δt 0.2 s × 60 s) of steady load on jittery links: zero reconfigurations."""
    url = adaptive.gateway_url
    before = plan_of(url)
    load = Load(url).start()
    try:
        time.sleep(300 * INTERVAL_S)
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    assert len(load.tokens) >= 30  # the load really ran
    assert commits_after(url, before["epoch"]) == []
    assert plan_of(url)["epoch"] == before["epoch"]
    print(f"anti-churn: 0 reconfigurations in {300 * INTERVAL_S:.0f} s; {load.done} requests, 0 failed")


def test_bandwidth_collapse_moves_the_middle_segment(adaptive: LocalCluster, emulation: Emulation) -> None:
    """The device link of the MEC node serving the middle segment falls from 400 to 5 Mbit/s (and its
    RTT rises to 150 ms): probes see it, a plan moving the middle segment off that node commits within
    seconds, latency comes back down, and no request fails."""
    url = adaptive.gateway_url
    l_max_s = adaptive.cluster.thresholds.latency_ms / 1e3
    before = plan_of(url)
    middle = node_of_block(before, MIDDLE[0])
    assert middle in {"mec1", "mec2"}, before
    load = Load(url).start()
    try:
        started = time.monotonic()
        time.sleep(6)
        collapsed_at = time.monotonic()
        emulation.link("device", middle, 5.0, 150.0)

        def moved() -> dict[str, Any] | None:
            for e in commits_after(url, before["epoch"]):
                if all(e["chosen"]["assignment"][b] != middle for b in MIDDLE):
                    return e
            return None

        commit = wait_for("a plan moving the middle segment", moved, 30)
        moved_at = time.monotonic()
        time.sleep(6)
        settled = time.monotonic()
        time.sleep(10)
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    assert moved_at - collapsed_at < 15, moved_at - collapsed_at
    earlier = commits_after(url, before["epoch"])
    first = earlier[0]  # the first reaction was triggered by what the probes measured
    assert "bandwidth" in {t["kind"] for t in first["triggers"]}, first
    assert commit["new_epoch"] <= plan_of(url)["epoch"]
    baseline = quartile(load.gaps_between(started + 2, collapsed_at))
    after = load.gaps_between(settled, time.monotonic())
    assert len(after) >= 5
    during = load.gaps_between(collapsed_at, moved_at)
    print(
        f"bandwidth collapse: moved {moved_at - collapsed_at:.1f} s after it (epoch {commit['new_epoch']}, "
        f"phases {commit['phases']}); token gaps, lower quartile: before {baseline * 1e3:.0f} ms, while "
        f"collapsed {quartile(during) * 1e3 if during else float('nan'):.0f} ms, after "
        f"{quartile(after) * 1e3:.0f} ms; {load.done} requests, 0 failed"
    )
    # The latency EWMA (the orchestrator's weight, over the decode-step gaps as they arrived) falls back
    # under L_max once the new plan serves, and the least-disturbed steps (the lower quartile, as for the
    # baseline: on 2 shared cores CPU contention only adds time) are under it too.
    ewma, lowest = after[0], math.inf
    for gap in after[1:]:
        ewma += EWMA_ALPHA * (gap - ewma)
        lowest = min(lowest, ewma)
    assert lowest < l_max_s and quartile(after) < l_max_s, (lowest, quartile(after), l_max_s)


def test_overload_migrates_off_and_an_oscillating_load_does_not_flap(
    adaptive: LocalCluster, emulation: Emulation
) -> None:
    """The MEC node serving the middle segment gets 95 % background load: its segments migrate off.
    Then its load oscillates (0 ↔ 0.95 every 4 s) for 32 s: reconfigurations stay rare (at most one
    more, never within T_cool of the previous), and no request fails."""
    url = adaptive.gateway_url
    before = plan_of(url)
    busy = node_of_block(before, MIDDLE[0])
    assert busy in {"mec1", "mec2"}, before
    load = Load(url).start()
    try:
        time.sleep(2)
        emulation.load(busy, 0.95)
        moved = wait_for(
            "segments to migrate off the loaded node", lambda: commits_after(url, before["epoch"]), 30
        )
        first = moved[0]
        after_move = plan_of(url)
        oscillation_started = time.monotonic()
        for i in range(8):
            emulation.load(busy, 0.0 if i % 2 == 0 else 0.95)
            time.sleep(4)
        oscillation_s = time.monotonic() - oscillation_started
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    assert {t["kind"] for t in first["triggers"]} & {"utilization", "latency"}, first
    assert all(node_of_block(after_move, b) != busy for b in MIDDLE), after_move
    later = commits_after(url, first["new_epoch"])
    assert len(later) <= 1, [(e["at_s"], e["reason"]) for e in later]
    times = [first["at_s"], *(e["at_s"] for e in later)]
    assert all(b - a >= COOLDOWN_S for a, b in itertools.pairwise(times)), times
    assert oscillation_s >= 30
    print(
        f"overload: moved off {busy} by epoch {first['new_epoch']} "
        f"({[t['kind'] for t in first['triggers']]}); "
        f"{len(later)} reconfiguration(s) during {oscillation_s:.0f} s of oscillating load; "
        f"{load.done} requests, 0 failed"
    )


@pytest.fixture(scope="module")
def private() -> Iterator[LocalCluster]:
    lc = start_cluster("mec-privacy.yaml")
    try:
        yield lc
    finally:
        stop_cluster(lc)


def critical_steps_on(lc: LocalCluster, node_id: str, critical: set[int]) -> int:
    """Steps the node has run on segments holding a privacy-critical block (as its telemetry says)."""
    return sum(s.steps for s in telemetry(lc, node_id).segments if set(range(s.start, s.end)) & critical)


def test_privacy_high_request_is_served_only_after_a_trusted_plan(private: LocalCluster) -> None:
    """`request_privacy: none` lets the plan run privacy-critical blocks on the untrusted cloud; a
    `privacy: high` request makes the orchestrator commit a plan keeping them on trusted nodes, and
    it is served only on that plan (its report, the plans and the cloud's telemetry agree)."""
    url = private.gateway_url
    critical = set(private.cluster.privacy.block_indices(6))
    trusted = {n.id for n in private.cluster.nodes if n.trusted}
    before = plan_of(url)
    leaking = {node_of_block(before, b) for b in critical} - trusted
    assert leaking == {"cloud"}, before  # the premise: privacy-none traffic may use the cloud for them
    body = {"model": "builtin:llama-tiny", "prompt": "Once upon", "max_tokens": 6, "temperature": 0}
    plain = httpx.post(f"{url}/v1/completions", json={**body, "privacy": "none"}, timeout=60).json()
    assert "cloud" in plain["edgesplit"]["nodes"]
    cloud_before = critical_steps_on(private, "cloud", critical)

    resp = httpx.post(f"{url}/v1/completions", json={**body, "privacy": "high"}, timeout=90)
    assert resp.status_code == 200, resp.text
    report = resp.json()["edgesplit"]
    assert report["privacy_violation"] is False
    assert min(report["epochs"]) > before["epoch"], report
    commits = {e["new_epoch"]: e for e in commits_after(url, before["epoch"])}
    assert "privacy" in {t["kind"] for t in commits[min(report["epochs"])]["triggers"]}, commits
    for epoch in report["epochs"]:  # every plan the request ran on kept the critical blocks trusted
        assignment = commits[epoch]["chosen"]["assignment"]
        assert all(assignment[b] in trusted for b in critical), (epoch, assignment)
    assert critical_steps_on(private, "cloud", critical) <= cloud_before


# --- a recovered node gets its segments back: only after T_cool, and only if it pays ----------------

RETURN_COOLDOWN_S = 8.0
IMPROVE_S = 2.0
RETURNING = (
    "--interval",
    str(INTERVAL_S),
    "--cooldown",
    str(RETURN_COOLDOWN_S),
    "--improve-interval",
    str(IMPROVE_S),
)
MEC2_SPEED = 0.5


@pytest.fixture(scope="module")
def returning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """mec-adaptive with mec2 at half mec1's speed, so an idle mec1 is clearly (≈ 50 %) the better
    home of the middle segment; L_max out of the way (this cluster is about load, not latency);
    T_cool 8 s and an improvement check every 2 s (`--improve-interval`); through the cluster file's
    `orchestrator:` section the confirmation is shortened to 1 s and an untriggered change must gain
    30 % (predicted gains measured on this machine: 38–44 % for an idle mec1, and scattered by ±8
    points around ≈ 13 % in the marginal case — 30 % keeps both clear of the line)."""
    data = yaml.safe_load((EXAMPLES / "mec-adaptive.yaml").read_text())
    data["emulation"]["nodes"]["mec2"]["speed_factor"] = MEC2_SPEED
    data["thresholds"]["latency_ms"] = 1000
    data["orchestrator"] = {"confirm_s": 1.0, "improvement_min_gain": 0.30}
    path = tmp_path_factory.mktemp("returning") / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lc = start_cluster(path, RETURNING)
    try:
        yield lc
    finally:
        stop_cluster(lc)


@pytest.fixture
def returning_emulation(returning: LocalCluster) -> Iterator[Emulation]:
    emu = Emulation(returning)
    try:
        yield emu
    finally:
        emu.reset()


def migrated_off(url: str, epoch: int, node_id: str) -> dict[str, Any] | None:
    """The first committed change after ``epoch`` that took every middle block off ``node_id``."""
    return next(
        (
            e
            for e in commits_after(url, epoch)
            if all(e["chosen"]["assignment"][b] != node_id for b in MIDDLE)
        ),
        None,
    )


def improvement_checks(url: str, after_s: float) -> list[dict[str, Any]]:
    """Decisions of the untriggered improvement check recorded after ``after_s`` (orchestrator time)."""
    return [
        e
        for e in decisions(url)
        if e["at_s"] > after_s and [t["kind"] for t in e["triggers"]] == ["improvement"]
    ]


def start_load(url: str) -> Load:
    load = Load(url).start()
    wait_for("tokens to flow", lambda: len(load.tokens) >= 5, 60)
    return load


def test_a_recovered_node_gets_its_segment_back_only_after_t_cool(
    returning: LocalCluster, returning_emulation: Emulation
) -> None:
    """mec1 (serving the middle segment) goes to 95 % load → it migrates to mec2. The load is gone
    again ~a second later, so an idle mec1 is ≈ 50 % better at once — yet the segment comes back
    only by the improvement check, no sooner than T_cool after the migration, and the decision
    shows the gain beat both `improvement_min_gain` and the move's cost."""
    url = returning.gateway_url
    before = plan_of(url)
    busy = node_of_block(before, MIDDLE[0])
    assert busy == "mec1", before  # the premise: the faster MEC serves the middle segment
    load = start_load(url)
    try:
        returning_emulation.load(busy, 0.95)
        off = wait_for(
            "the middle segment to migrate off mec1", lambda: migrated_off(url, before["epoch"], busy), 30
        )
        returning_emulation.load(busy, 0.0)

        def returned() -> dict[str, Any] | None:
            return next(
                (
                    e
                    for e in commits_after(url, off["new_epoch"])
                    if all(e["chosen"]["assignment"][b] == busy for b in MIDDLE)
                ),
                None,
            )

        back = wait_for("the middle segment to return to mec1", returned, 45)
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    assert {t["kind"] for t in off["triggers"]} & {"utilization", "latency"}, off
    # Nothing else changed in between, and the return came from the improvement check.
    assert [e["new_epoch"] for e in commits_after(url, off["new_epoch"])][:1] == [back["new_epoch"]]
    assert [t["kind"] for t in back["triggers"]] == ["improvement"], back
    # Only after T_cool: the return was decided (so also committed) at least T_cool after the change
    # it reverses, and the improvement check did not even plan within T_cool of it.
    assert back["at_s"] - off["at_s"] >= RETURN_COOLDOWN_S, (off["at_s"], back["at_s"])
    committed_at = back["at_s"] + sum(back["phases"].values())  # planning, prepare, commit (same clock)
    assert committed_at - off["at_s"] >= RETURN_COOLDOWN_S
    checks = improvement_checks(url, off["at_s"])
    assert checks and all(e["at_s"] - off["at_s"] >= RETURN_COOLDOWN_S for e in checks), checks
    # Only if worth it: predicted gain over the current plan ≥ improvement_min_gain, and the latency
    # it saves over the horizon exceeds what moving costs.
    keep = next(c for c in back["candidates"] if c["kind"] == "keep")
    chosen = back["chosen"]
    gain = 1 - chosen["predicted_latency_s"] / keep["predicted_latency_s"]
    assert gain >= returning.cluster.orchestrator.improvement_min_gain, (gain, keep, chosen)
    assert chosen["gain_s"] > chosen["cost_s"], chosen
    print(
        f"return: off mec1 by epoch {off['new_epoch']}, back by epoch {back['new_epoch']} "
        f"{back['at_s'] - off['at_s']:.1f} s later (T_cool {RETURN_COOLDOWN_S:.0f} s, committed "
        f"{committed_at - off['at_s']:.1f} s after); predicted gain {gain:.0%}, "
        f"{chosen['gain_s']:.2f} s saved vs {chosen['cost_s']:.2f} s cost; {load.done} requests, 0 failed"
    )


def test_a_return_that_would_not_pay_is_considered_and_rejected(
    returning: LocalCluster, returning_emulation: Emulation
) -> None:
    """mec1 migrates off under 95 % load as before, but then keeps a 40 % background load: it is
    still the faster node, only marginally (≈ 15 % lower predicted latency, below the 30 % an
    untriggered change must gain here). Every improvement check considers moving back and rejects it with
    that reason; nothing moves over several intervals."""
    url = returning.gateway_url
    before = plan_of(url)
    busy = node_of_block(before, MIDDLE[0])
    assert busy == "mec1", before
    emulation = returning.cluster.emulation
    assert emulation is not None
    speeds = {n: emulation.nodes[n].speed_factor for n in ("mec1", "mec2")}
    # Effective speed of mec1 1.2 × mec2's: better, but by less than improvement_min_gain.
    partial = 1 - 1.2 * speeds["mec2"] / speeds["mec1"]
    min_gain = returning.cluster.orchestrator.improvement_min_gain
    load = start_load(url)
    try:
        returning_emulation.load(busy, 0.95)
        off = wait_for(
            "the middle segment to migrate off mec1", lambda: migrated_off(url, before["epoch"], busy), 45
        )
        returning_emulation.load(busy, partial)

        def rejections() -> list[dict[str, Any]] | None:
            found = [
                e
                for e in improvement_checks(url, off["at_s"])
                if e["action"] == "keep"
                and any(
                    any(c["assignment"][b] == busy for b in MIDDLE)
                    and c["note"].startswith("gain ")
                    and f"below {min_gain:.0%}" in c["note"]
                    for c in e["candidates"]
                )
            ]
            return found if len(found) >= 3 else None

        try:
            rejected = wait_for("three rejected returns to mec1", rejections, 60)
        except AssertionError as exc:  # say what the checks decided instead
            seen = [
                (round(e["at_s"] - off["at_s"], 1), e["reason"]) for e in improvement_checks(url, off["at_s"])
            ]
            raise AssertionError(f"{exc}; improvement checks since the migration: {seen}") from None
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    assert commits_after(url, off["new_epoch"]) == []  # no return, no other change
    assert plan_of(url)["epoch"] == off["new_epoch"]
    assert rejected[-1]["at_s"] - rejected[0]["at_s"] >= 2 * IMPROVE_S  # a window of several checks
    notes = sorted({c["note"] for e in rejected for c in e["candidates"] if c["note"].startswith("gain ")})
    print(
        f"no return: mec1 at {partial:.0%} load, {len(rejected)} improvement checks over "
        f"{rejected[-1]['at_s'] - off['at_s']:.1f} s rejected it ({'; '.join(notes)}); "
        f"{load.done} requests, 0 failed"
    )
