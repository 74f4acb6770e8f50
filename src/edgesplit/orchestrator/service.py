"""The ``edgesplit orchestrator`` process shell: one asyncio loop around ``OrchestratorCore``.

Owns the sockets and the clock: node telemetry and the gateway's observations in, signed
prepare/commit/release/abort out (DESIGN §4.6), the gateway's plan and event log updated. Decides
nothing itself — every decision is the core's. Never sees the cluster file's emulation section.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgesplit.errors import EdgesplitError
from edgesplit.orchestrator.controller_settings import MonitoringInputs
from edgesplit.orchestrator.core import OrchestratorCore, Step
from edgesplit.orchestrator.events import Action, DecisionEvent, describe, json_safe
from edgesplit.orchestrator.observations import NodeSeen, fold_report, gateway_inputs, to_node_telemetry
from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import LinkObservation
from edgesplit.orchestrator.signing import SignedMessage

if TYPE_CHECKING:  # gRPC is imported when the process runs, so the core's modules stay importable alone
    from edgesplit.transport.node_admin import NodeAdmin
    from edgesplit.transport.tls import TlsConfig
    from edgesplit.wire.messages import TelemetrySnapshot

log = logging.getLogger(__name__)

TELEMETRY_TIMEOUT_S = 2.0
PREPARE_TIMEOUT_S = 120.0
CONTROL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServiceSettings:
    """The shell's own knobs (the core's come from ``OrchestratorConfig``)."""

    interval_s: float = 1.0
    """Δt of the monitoring loop."""
    release_delay_s: float = 2.0
    """After the gateway switched, steps already under way on the old epoch finish before its release."""
    prepare_timeout_s: float = PREPARE_TIMEOUT_S
    start_timeout_s: float = 60.0
    """At start, how long to wait for any node to answer; with none answering, ``run`` raises."""
    start_grace_s: float = 5.0
    """At start, once one node answered, how much longer the others get before planning goes ahead
    without them (they count as absent, as after a heartbeat timeout)."""


@dataclass
class OrchestratorService:
    """Runs the monitoring loop until stopped; ``echo`` gets one line per recorded decision."""

    core: OrchestratorCore
    blocks: Sequence[BlockCost]
    addresses: Mapping[str, str]
    source: str
    gateway_url: str | None
    admin_token: str | None = None
    settings: ServiceSettings = ServiceSettings()
    echo: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    tls: TlsConfig | None = None
    """mTLS to the nodes with the orchestrator's certificate (None: insecure channels)."""
    http_url: str | None = None
    """This process's HTTP API (plan preview); the gateway is told it so it can proxy the preview."""
    _seen: dict[str, NodeSeen] = field(default_factory=dict)
    _admins: dict[str, NodeAdmin] = field(default_factory=dict)
    _gateway_seq: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _http: Any = None

    def _admin(self, node_id: str) -> NodeAdmin:
        if node_id not in self._admins:
            from edgesplit.transport.node_admin import NodeAdmin

            self._admins[node_id] = NodeAdmin(self.addresses[node_id], self.tls)
        return self._admins[node_id]

    async def run(self, stop: asyncio.Event, on_ready: Callable[[Plan | None], None] | None = None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        self._http = httpx.AsyncClient(timeout=CONTROL_TIMEOUT_S, headers=headers)
        try:
            await self._announce()
            # 1) Start: what do the nodes serve? Adopt it (restart) or plan and roll out d_0.
            reports = await self._first_reports(stop)
            if reports is None:
                return  # stopped while waiting for the nodes
            inputs = MonitoringInputs(reports=[to_node_telemetry(r, None) for r in reports.values()])
            epochs = {n: max(r.epochs) for n, r in reports.items() if r.epochs}
            step = self.core.start(self.clock(), epochs, inputs)
            await self._publish(step.event)
            if step.message is not None:
                await self._roll_out(step)
            elif step.plan is not None:
                await self._adopted(step.plan)
            if on_ready is not None:
                on_ready(self.core.controller.plan)
            while not stop.is_set():
                # 2) Wait Δt (or stop).
                try:
                    await asyncio.wait_for(stop.wait(), self.settings.interval_s)
                    break
                except TimeoutError:
                    pass
                # 3) Collect what arrived since the last cycle: node telemetry, gateway observations.
                inputs = await self._monitoring_inputs()
                # 4) One cycle of Algorithm 1. A failing cycle is logged and skipped: serving goes on
                #    on the committed plan, and the next cycle starts from fresh measurements.
                try:
                    step = self.core.tick(self.clock(), inputs)
                except EdgesplitError as exc:
                    log.error("monitoring cycle failed (plan unchanged): %s", exc)
                    continue
                if step.event.event_id is not None or step.event.action is not Action.KEEP:
                    await self._publish(step.event)
                # 5) A new plan: prepare → all ready → commit → gateway → release old (abort on failure).
                if step.message is not None:
                    await self._roll_out(step)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.gather(*(a.close() for a in self._admins.values()), return_exceptions=True)
            await self._http.aclose()

    # --- monitoring ------------------------------------------------------------------------------

    async def _collect_telemetry(self) -> dict[str, TelemetrySnapshot]:
        return (await self._ask_telemetry(sorted(self.addresses)))[0]

    async def _ask_telemetry(
        self, ids: Sequence[str]
    ) -> tuple[dict[str, TelemetrySnapshot], dict[str, BaseException]]:
        """One telemetry round to ``ids``: (reports, why each other node did not answer)."""
        from edgesplit.wire.messages import TelemetrySnapshot

        got = await asyncio.gather(
            *(self._admin(n).telemetry(TELEMETRY_TIMEOUT_S, dict(self.addresses)) for n in ids),
            return_exceptions=True,
        )
        reports = {n: r for n, r in zip(ids, got, strict=True) if isinstance(r, TelemetrySnapshot)}
        errors = {n: r for n, r in zip(ids, got, strict=True) if isinstance(r, BaseException)}
        return reports, errors

    async def _first_reports(self, stop: asyncio.Event) -> dict[str, TelemetrySnapshot] | None:
        """Every node's first report, waiting (bounded) for those not up yet; None if stopped meanwhile.

        Raises ``NodeUnavailableError`` naming every node when none answered within
        ``start_timeout_s`` (a wrong address or certificate must not leave a silent orchestrator).
        """
        from edgesplit.errors import NodeUnavailableError

        started = time.monotonic()
        reports: dict[str, TelemetrySnapshot] = {}
        first_answer: float | None = None
        while True:
            missing = sorted(set(self.addresses) - set(reports))
            got, errors = await self._ask_telemetry(missing)
            reports.update(got)
            now = time.monotonic()
            if reports and first_answer is None:
                first_answer = now
            missing = sorted(set(self.addresses) - set(reports))
            if not missing:
                return reports
            timed_out = now - started >= self.settings.start_timeout_s
            if first_answer is not None and (timed_out or now - first_answer >= self.settings.start_grace_s):
                log.warning("starting without node(s) %s: no answer yet", ", ".join(missing))
                return reports
            if timed_out:
                why = "; ".join(f"{n} at {self.addresses[n]} ({_first_line(errors.get(n))})" for n in missing)
                raise NodeUnavailableError(
                    f"the orchestrator reached no node within {self.settings.start_timeout_s:g} s: {why}; "
                    "check that the node agents run and the cluster file's addresses and certificates"
                )
            try:
                await asyncio.wait_for(stop.wait(), min(0.5, self.settings.start_timeout_s))
                return None
            except TimeoutError:
                pass

    async def _monitoring_inputs(self) -> MonitoringInputs:
        reports = []
        probes: list[LinkObservation] = []
        for node_id, snap in (await self._collect_telemetry()).items():
            report, observations = fold_report(self._seen.setdefault(node_id, NodeSeen()), snap)
            reports.append(report)
            probes += observations
        observed = await self._observations()
        latencies, links, workload = gateway_inputs(
            observed, self.core.controller.plan, self.blocks, self.source, self.settings.interval_s
        )
        return MonitoringInputs(
            reports=reports,
            links=[*probes, *links],
            latencies=latencies,
            workload=workload,
            # Waiting privacy-high requests, or such traffic still running: either needs a plan that
            # keeps privacy-critical blocks trusted (a running one would wait at its next step).
            pending_privacy_high=int(observed.get("privacy_high_waiting", 0))
            + int(bool(observed.get("privacy_high_recent", False))),
            failed_nodes=frozenset(observed.get("failed_nodes", ())),
        )

    async def _observations(self) -> dict[str, Any]:
        if not self.gateway_url:
            return {}
        try:
            resp = await self._http.get(
                f"{self.gateway_url}/v1/observations", params={"after": self._gateway_seq}
            )
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
        except Exception as exc:  # the gateway being away must not stop monitoring the nodes
            log.warning("no observations from the gateway: %s", exc)
            return {}
        self._gateway_seq = int(data.get("seq", self._gateway_seq))
        return data

    # --- reconfiguration broadcast ---------------------------------------------------------------

    async def _roll_out(self, step: Step) -> None:
        assert step.message is not None and step.plan is not None
        plan, old = step.plan, self.core.controller.plan
        required = sorted(plan.nodes)
        # Nodes leaving the plan get it too (they load nothing) so they can release the old epoch.
        leaving = sorted((old.nodes if old else frozenset()) - plan.nodes)
        targets = [n for n in (*required, *leaving) if n in self.addresses]
        started = time.perf_counter()
        prepared = await asyncio.gather(
            *(self._send_prepare(n, step.message) for n in targets), return_exceptions=True
        )
        prepare_s = time.perf_counter() - started
        failed = {n for n, r in zip(targets, prepared, strict=True) if isinstance(r, BaseException)}
        for n, r in zip(targets, prepared, strict=True):
            if isinstance(r, BaseException):
                log.warning("prepare of epoch %d failed on %s: %s", plan.epoch, n, r)
        if failed & set(required) or set(required) - set(targets):
            await self._abort(plan, targets, failed | (set(required) - set(targets)), prepare_s)
            return
        committed_on = [n for n in targets if n not in failed]
        commit_started = time.perf_counter()
        commit = self.core.commit_message(plan.epoch)
        results = await asyncio.gather(
            *(self._send(n, "commit", plan.epoch, commit) for n in committed_on), return_exceptions=True
        )
        bad = {n for n, r in zip(committed_on, results, strict=True) if isinstance(r, BaseException)}
        if bad & set(required):
            await self._abort(plan, targets, bad, prepare_s)
            return
        try:
            await self._tell_gateway(plan)
        except EdgesplitError as exc:
            log.warning("the gateway refused epoch %d: %s", plan.epoch, exc)
            await self._abort(plan, targets, frozenset(), prepare_s)
            return
        done = self.core.committed(plan.epoch, self.clock(), prepare_s, time.perf_counter() - commit_started)
        await self._publish(done.event)
        if done.message is not None and old is not None:
            # Only the old plan's nodes hold anything of its epoch; nodes new to the plan free nothing.
            holders = [n for n in sorted(old.nodes) if n in self.addresses]
            self._later(self._release(old.epoch, holders, done.message))

    async def _abort(
        self, plan: Plan, targets: list[str], failed: set[str] | frozenset[str], prepare_s: float
    ) -> None:
        step = self.core.aborted(plan.epoch, self.clock(), frozenset(failed), prepare_s)
        await self._publish(step.event)
        if step.message is not None:
            await asyncio.gather(
                *(self._send(n, "release", plan.epoch, step.message) for n in targets if n not in failed),
                return_exceptions=True,
            )

    async def _release(self, epoch: int, nodes: list[str], message: SignedMessage) -> None:
        await asyncio.sleep(self.settings.release_delay_s)
        results = await asyncio.gather(
            *(self._send(n, "release", epoch, message) for n in nodes), return_exceptions=True
        )
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("release of epoch %d on %s failed: %s", epoch, n, r)

    async def _send_prepare(self, node_id: str, message: SignedMessage) -> None:
        await self._admin(node_id).prepare_raw(
            message.payload, message.signature, self.settings.prepare_timeout_s
        )

    async def _send(self, node_id: str, what: str, epoch: int, message: SignedMessage) -> None:
        admin = self._admin(node_id)
        call = admin.commit if what == "commit" else admin.release
        await call(epoch, CONTROL_TIMEOUT_S, message.payload, message.signature)

    async def _adopted(self, plan: Plan) -> None:
        """After a restart: nodes serve ``plan``; tell the gateway only if it routes on an older epoch."""
        if not self.gateway_url:
            return
        try:
            resp = await self._http.get(f"{self.gateway_url}/v1/plan")
            if int(resp.json().get("epoch", 0)) < plan.epoch:
                await self._tell_gateway(plan)
        except Exception as exc:  # serving goes on on the nodes' plan; the next change fixes the gateway
            log.warning("could not check the gateway's plan after adopting epoch %d: %s", plan.epoch, exc)

    async def _tell_gateway(self, plan: Plan) -> None:
        if not self.gateway_url:
            return
        from edgesplit.errors import NodeUnavailableError

        body = {
            "epoch": plan.epoch,
            "segments": [
                {"node": s.node_id, "start": s.start, "end": s.end, "address": self.addresses[s.node_id]}
                for s in plan.segments
            ],
            "cost": {}
            if plan.predicted_latency_s is None
            else {"latency_ms": plan.predicted_latency_s * 1e3},
            "solver": str(plan.meta.get("solver", "")),
        }
        try:
            resp = await self._http.put(f"{self.gateway_url}/v1/plan", json=body)
        except Exception as exc:
            raise NodeUnavailableError(f"cannot reach the gateway at {self.gateway_url}: {exc}") from exc
        if resp.status_code != 200:
            raise NodeUnavailableError(f"the gateway refused plan epoch {plan.epoch}: {resp.text}")
        await self._announce()

    async def _announce(self) -> None:
        """Tell the gateway where this orchestrator's HTTP API is (idempotent: a new gateway relearns it)."""
        if not self.gateway_url or not self.http_url:
            return
        try:
            await self._http.put(f"{self.gateway_url}/v1/orchestrator", json={"url": self.http_url})
        except Exception as exc:  # only the preview proxy depends on it
            log.warning("could not tell the gateway the orchestrator's URL: %s", exc)

    # --- events ----------------------------------------------------------------------------------

    async def _publish(self, event: DecisionEvent) -> None:
        """One line on stdout, and the event in the gateway's ``/v1/events`` log."""
        self.echo(describe(event))
        if not self.gateway_url:
            return
        try:
            await self._http.post(
                f"{self.gateway_url}/v1/events", json=json_safe({"kind": "decision", **event.to_dict()})
            )
        except Exception as exc:
            log.warning("could not post event to the gateway: %s", exc)

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _first_line(error: BaseException | None, limit: int = 160) -> str:
    """An exception as a short single line for a one-line error message."""
    if error is None:
        return "no answer"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
