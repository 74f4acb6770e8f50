"""The node's request handling: epoch-fenced segments, steps onto the compute thread, forwarding to
the next hop, results and errors to the gateway's sink, prepare/commit/release, emulation updates.

Implements wire.servicers.NodeHandler; never sees protobuf. Every await has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from pydantic import ValidationError

from edgesplit.errors import (
    CapacityError,
    ConfigError,
    EdgesplitError,
    NodeUnavailableError,
    PlanRejectedError,
    PrivacyViolationError,
    ServiceDeadError,
    SessionError,
    SessionNotFoundError,
    StreamHaltedError,
    TransportError,
)
from edgesplit.model.steps import SegmentStep
from edgesplit.node.admission import check_step_fields
from edgesplit.node.config import EmulationConfig, NodeConfig
from edgesplit.node.control_gate import ControlGate, epoch_file_of
from edgesplit.node.feedback import HaltedSessions, fed_back_step
from edgesplit.node.join_profile import JoinProfile, profile_blocks
from edgesplit.node.loading import SegmentSource
from edgesplit.node.probes import LinkProber
from edgesplit.node.segments import BatchReport, HostedSegment
from edgesplit.node.shard_cache import fetch_standby, standby_blocks
from edgesplit.node.telemetry import NodeTelemetry
from edgesplit.node.worker import ComputeWorker, StepDone
from edgesplit.transport.base import Hop, HopTiming
from edgesplit.transport.outbox import Outbox
from edgesplit.transport.peers import PeerPool
from edgesplit.transport.tls import TlsConfig, channel_credentials
from edgesplit.wire.messages import (
    EpochState,
    KVTransfer,
    PlanSpec,
    StepEnvelope,
    StepOutcome,
    TelemetrySnapshot,
)
from edgesplit.wire.stubs import EncodedStep, encode_step, outcome_nbytes

log = logging.getLogger(__name__)

Range = tuple[int, int]
SINK_TIMEOUT_S = 5.0
PROBE_REPLY_BYTES = 16


class NodeService:
    """One node's state: hosted segments per epoch, the compute worker, peers and telemetry."""

    def __init__(self, config: NodeConfig, source: SegmentSource, tls: TlsConfig | None = None) -> None:
        self.config = config
        self.node_id = config.node_id
        self.emulation = config.emulation
        self.gate = ControlGate(
            config.node_id,
            config.orchestrator_public_key,
            config.allow_unsigned_plans,
            epoch_file_of(config),
        )
        self.trusted = config.trusted
        """May this node run privacy-critical blocks of privacy-high requests? The one switch for trust."""
        self.privacy_blocks = frozenset(config.privacy_blocks)
        self.telemetry_state = NodeTelemetry(config.node_id)
        self._source = source
        identify = getattr(source, "identify", None)
        if tls is not None and identify is not None:  # shard keys are wrapped to the node's TLS key
            identify(config.node_id, tls.key_pem)
        self._segments: dict[Range, HostedSegment] = {}
        self._epochs: dict[int, frozenset[Range]] = {}  # prepared or committed, not yet released
        self._committed: set[int] = set()
        self._highest_epoch = -1
        self._peers = PeerPool(
            self.emulation.link_specs(),
            self.emulation.default_link.spec(),
            own_id=config.node_id,
            credentials=channel_credentials(tls),
        )
        self._worker = ComputeWorker(pace=self._pace, align_max_s=config.batch_align_ms / 1000)
        self.prober = LinkProber(config.node_id, self._peers)
        self.join_profile = JoinProfile()
        self._control = asyncio.Lock()
        self._spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None
        self._step_outboxes: dict[str, Outbox[EncodedStep]] = {}
        self._sink_outboxes: dict[str, Outbox[StepOutcome]] = {}
        self._halted = HaltedSessions()

    def attach(self, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        """Give the service its supervisor (the agent's TaskGroup ``create_task``)."""
        self._spawn = spawn

    # --- data plane -----------------------------------------------------------------------------

    def _pace(self, segment: HostedSegment, report: BatchReport) -> float:
        shape = segment.shape
        return self.emulation.emulated_duration_s(
            shape.start, shape.end, report.prefill_tokens, report.decode_rows, report.compute_s
        )

    def _locate(self, env: StepEnvelope) -> tuple[Hop, HostedSegment]:
        if not 0 <= env.hop_index < len(env.route.hops):
            raise SessionError(f"hop index {env.hop_index} outside a route of {len(env.route.hops)} hops")
        hop = env.route.hops[env.hop_index]
        if hop.node_id != self.node_id:
            raise SessionError(f"step for node {hop.node_id!r} reached node {self.node_id!r}")
        key = (hop.start, hop.end)
        if key not in self._epochs.get(env.route.epoch, frozenset()):
            held = {e: sorted(f"{s}:{t}" for s, t in r) for e, r in sorted(self._epochs.items())}
            raise PlanRejectedError(
                f"node {self.node_id} does not serve blocks {hop.start}:{hop.end} in epoch "
                f"{env.route.epoch}; it holds {held}; route on a committed plan"
            )
        return hop, self._segments[key]

    def _check_privacy(self, env: StepEnvelope, hop: Hop) -> None:
        """Data-plane privacy: an untrusted node never runs privacy-critical blocks of a privacy-high step."""
        if self.trusted or not env.privacy_high:
            return
        critical = sorted(b for b in self.privacy_blocks if hop.start <= b < hop.end)
        if critical:
            raise PrivacyViolationError(
                f"node {self.node_id} is not trusted but was asked to run privacy-critical block(s) "
                f"{', '.join(map(str, critical))} of privacy-high session {env.session_id}; refused "
                "(route privacy-high requests over trusted nodes, or send with privacy 'none')"
            )

    async def step(self, env: StepEnvelope, nbytes: int, decode_error: Exception | None) -> None:
        """Accept a step (the ack returns at once); the result or error goes to the gateway's sink."""
        received = time.perf_counter()
        self.telemetry_state.count_in(nbytes)
        try:
            hop, segment = self._locate(env)
            if env.continued and env.hop_index == 0 and env.session_id in self._halted:
                raise StreamHaltedError(f"session {env.session_id} was halted by the gateway")
            self._check_privacy(env, hop)
            check_step_fields(env)
            if decode_error is not None:
                if isinstance(decode_error, EdgesplitError):
                    raise decode_error
                raise SessionError(f"undecodable step for session {env.session_id}: {decode_error}")
            assert env.inputs is not None
            segment.validate(env.inputs)
            if self._worker.queue_depth >= self.config.max_queued_steps:
                raise CapacityError(
                    f"node {self.node_id} has {self._worker.queue_depth} steps queued "
                    f"(max_queued_steps {self.config.max_queued_steps}); retry later or route elsewhere"
                )
            # Submitted now, not in a task: one StepMany's steps join the same batch and the queue.
            seg_step = SegmentStep(env.session_id, env.inputs, env.position, env.sampling)
            pending = self._worker.submit(segment, seg_step)
        except EdgesplitError as exc:
            self._run(self._report(env, exc))
            return
        self._run(self._process(env, segment, received, pending))

    def _step_outbox(self, address: str) -> Outbox[EncodedStep]:
        box = self._step_outboxes.get(address)
        if box is None:
            stub = self._peers.node(address)
            box = self._step_outboxes[address] = Outbox(stub.send_steps, self._run)
        return box

    def _sink_outbox(self, address: str) -> Outbox[StepOutcome]:
        box = self._sink_outboxes.get(address)
        if box is None:
            stub = self._peers.sink(address)
            box = self._sink_outboxes[address] = Outbox(stub.deliver_many, self._run)
        return box

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._spawn is None:
            coro.close()
            raise ServiceDeadError(f"node {self.node_id} is not running")
        self._spawn(coro)

    async def _process(
        self, env: StepEnvelope, segment: HostedSegment, received: float, pending: asyncio.Future[StepDone]
    ) -> None:
        try:
            try:
                done = await asyncio.wait_for(pending, max(env.budget_s, 1e-3))
            except TimeoutError:
                raise TransportError(
                    f"step of session {env.session_id} ran out of its {env.budget_s:.3f} s budget "
                    f"at node {self.node_id}"
                ) from None
            self.telemetry_state.m_queue_time.observe(done.queue_s)
            self.telemetry_state.m_compute.labels(f"{segment.shape.start}:{segment.shape.end}").observe(
                done.compute_s
            )
            if done.error is not None:
                raise done.error
            assert done.output is not None
            mine = HopTiming(self.node_id, done.queue_s, done.compute_s, 0.0)
            if env.hop_index == len(env.route.hops) - 1:
                if done.output.token_id is None:
                    raise SessionError(
                        f"blocks {segment.shape.start}:{segment.shape.end} are last but sample no token"
                    )
                token_id = int(done.output.token_id)
                outcome = StepOutcome(env.session_id, env.step_id, token_id, (*env.timings, mine))
                follow = fed_back_step(env, token_id)
                if follow is not None:  # the next step first: it is on the critical path
                    self._run(self._feed_back(follow))
                await self._deliver(env, outcome, received, stamp=True)
            else:
                if done.output.hidden is None:
                    raise SessionError(
                        f"blocks {segment.shape.start}:{segment.shape.end} returned no hidden states"
                    )
                await self._forward(env, done.output.hidden, mine, received)
            self.telemetry_state.m_steps.labels("ok").inc()
        except EdgesplitError as exc:
            await self._report(env, exc)
        except Exception as exc:  # a bug must still reach the waiting gateway
            log.exception("step failed on node %s", self.node_id)
            await self._report(env, ServiceDeadError(f"node {self.node_id}: {type(exc).__name__}: {exc}"))

    async def _forward(self, env: StepEnvelope, hidden: Any, mine: HopTiming, received: float) -> None:
        nxt = env.route.hops[env.hop_index + 1]
        send_start = time.perf_counter()
        out_env = replace(
            env,
            hop_index=env.hop_index + 1,
            inputs=hidden,
            timings=(*env.timings, mine),
            budget_s=env.budget_s - (send_start - received),
        )
        encoded = encode_step(out_env)
        await self._peers.link(nxt.node_id).transmit(encoded.nbytes)
        send_s = time.perf_counter() - send_start
        encoded.stamp_send_s(send_s)
        encoded.message.budget_s = env.budget_s - (time.perf_counter() - received)
        self.telemetry_state.m_send.observe(send_s)
        self.telemetry_state.count_out(encoded.nbytes)
        try:
            await self._step_outbox(nxt.address).submit(encoded, max(out_env.budget_s, 1e-3))
        except EdgesplitError as exc:
            raise NodeUnavailableError(
                f"node {self.node_id} could not forward to {nxt.node_id} at {nxt.address}: {exc}"
            ) from exc

    async def _feed_back(self, env: StepEnvelope) -> None:
        """Send a fed-back step to hop 0 (this node: straight to its own queue, no network)."""
        first = env.route.hops[0]
        try:
            if env.session_id in self._halted:
                raise StreamHaltedError(f"session {env.session_id} was halted by the gateway")
            if first.node_id == self.node_id:
                await self.step(env, 0, None)
                return
            encoded = encode_step(env)
            await self._peers.link(first.node_id).transmit(encoded.nbytes)
            self.telemetry_state.count_out(encoded.nbytes)
            await self._step_outbox(first.address).submit(encoded, max(env.budget_s, 1e-3))
        except StreamHaltedError as exc:
            await self._report(env, exc)
        except EdgesplitError as exc:
            lost = NodeUnavailableError(f"node {self.node_id} could not feed back to {first.node_id}: {exc}")
            await self._report(env, lost, failed_node_id=first.node_id)

    async def _deliver(self, env: StepEnvelope, outcome: StepOutcome, received: float, stamp: bool) -> None:
        send_start = time.perf_counter()
        nbytes = outcome_nbytes(outcome)
        await self._peers.link(env.reply_node_id).transmit(nbytes)
        if stamp and outcome.timings:
            last = outcome.timings[-1]
            outcome = replace(
                outcome,
                timings=(*outcome.timings[:-1], replace(last, send_s=time.perf_counter() - send_start)),
            )
        self.telemetry_state.count_out(nbytes)
        left_s = env.budget_s - (time.perf_counter() - received)
        timeout_s = left_s if left_s > SINK_TIMEOUT_S else SINK_TIMEOUT_S  # a NaN budget gets the floor too
        try:
            await self._sink_outbox(env.reply_address).submit(outcome, timeout_s)
        except EdgesplitError as exc:
            self._halted.halt(env.session_id)  # nobody is listening: stop feeding this session back
            log.warning(
                "node %s could not deliver step %s to %s: %s",
                self.node_id,
                env.step_id,
                env.reply_address,
                exc,
            )

    async def _report(
        self, env: StepEnvelope, error: EdgesplitError | Exception, failed_node_id: str | None = None
    ) -> None:
        """Tell the gateway this step failed here; failed_node_id names the culprit hop."""
        code = error.code if isinstance(error, EdgesplitError) else ServiceDeadError.code
        if code != StreamHaltedError.code:
            self.telemetry_state.m_steps.labels("error").inc()
        failed = failed_node_id or self.node_id
        nxt = env.hop_index + 1
        if failed_node_id is None and isinstance(error, NodeUnavailableError) and nxt < len(env.route.hops):
            failed = env.route.hops[nxt].node_id
        outcome = StepOutcome(
            env.session_id,
            env.step_id,
            -1,
            env.timings,
            error_code=code,
            error_message=str(error),
            failed_node_id=failed,
        )
        await self._deliver(env, outcome, time.perf_counter(), stamp=False)

    async def halt_session(self, session_id: str) -> int:
        """Stop feeding ``session_id``'s tokens back from now on (``stream_halted`` instead)."""
        self._halted.halt(session_id)
        return 1

    async def end_session(self, session_id: str) -> int:
        self._halted.forget(session_id)
        dropped = 0
        for segment in list(self._segments.values()):
            dropped += bool(
                await asyncio.wait_for(self._worker.call(partial(segment.drop, session_id)), 30.0)
            )
        return dropped

    async def reap_idle(self) -> int:
        """Drop sessions idle longer than ``idle_timeout_s``; returns how many."""
        now = time.monotonic()
        idle = self.config.idle_timeout_s
        reaped = 0
        for segment in list(self._segments.values()):
            reaped += len(await asyncio.wait_for(self._worker.call(partial(segment.reap, idle, now)), 30.0))
        return reaped

    # --- control plane --------------------------------------------------------------------------

    async def prepare(self, plan_json: bytes, signature: bytes) -> EpochState:
        """Load this node's segments of a signed plan; old segments keep serving meanwhile."""
        async with self._control:
            plan = self.gate.prepare(plan_json, signature)
        return await self.apply_prepare(plan)

    async def apply_prepare(self, plan: PlanSpec) -> EpochState:
        async with self._control:
            ranges = frozenset(plan.for_node(self.node_id))
            if plan.epoch < self._highest_epoch or (
                plan.epoch == self._highest_epoch and self._epochs.get(plan.epoch) != ranges
            ):
                raise PlanRejectedError(
                    f"node {self.node_id} refuses epoch {plan.epoch}: it has seen epoch {self._highest_epoch}"
                )
            started = time.perf_counter()
            fetch = getattr(self._source, "fetch", None)
            if fetch is not None:  # a shard cache: download and verify what this epoch lacks, first
                missing = sorted(ranges - self._segments.keys())
                self._check_may_fetch(b for s, e in missing for b in range(s, e))
                report = await asyncio.to_thread(fetch, missing, self.gate.offer)
                log.info("node %s epoch %d shards: %s", self.node_id, plan.epoch, report)
            loaded: dict[Range, HostedSegment] = {}
            for start, end in sorted(ranges - self._segments.keys()):
                runner, shape = await asyncio.to_thread(self._source.load, start, end)
                loaded[(start, end)] = HostedSegment(
                    shape, runner, self.config.max_sessions, self.config.max_step_tokens
                )
            cap = self.emulation.memory_cap_bytes
            if cap is not None:
                kept = [
                    s for key, s in self._segments.items() if any(key in r for r in self._epochs.values())
                ]
                need = sum(s.shape.param_bytes for s in (*kept, *loaded.values()))
                if need > cap:
                    raise CapacityError(
                        f"node {self.node_id} would hold {need} bytes of weights for epoch {plan.epoch}, "
                        f"over its {cap}-byte memory cap; plan fewer blocks here"
                    )
            self._segments.update(loaded)
            self._epochs[plan.epoch] = ranges
            self._highest_epoch = plan.epoch
            self._keep_standby()
            return EpochState(plan.epoch, tuple(sorted(ranges)), time.perf_counter() - started)

    def _keep_standby(self) -> None:
        """Fetch the standby shards around this node's segments in the background (never fails a plan)."""
        cache = getattr(self._source, "cache", None)
        offer = self.gate.offer
        if cache is None or offer is None or not self.config.standby_blocks or self._spawn is None:
            return
        ranges = frozenset().union(*self._epochs.values())
        near = standby_blocks(ranges, self.config.standby_blocks, len(offer.sha256))
        if not self.trusted:
            near = near - self.privacy_blocks
        self._run(fetch_standby(cache, near, offer))

    def _check_may_fetch(self, blocks: Iterable[int]) -> None:
        """An untrusted node never brings a privacy-critical block's shard onto its disk, encrypted or not."""
        critical = sorted(set(blocks) & self.privacy_blocks) if not self.trusted else []
        if critical:
            raise PrivacyViolationError(
                f"node {self.node_id} is not trusted and will not fetch the shards of privacy-critical "
                f"block(s) {critical}; plan them on a trusted node"
            )

    async def commit(self, epoch: int, signed: bytes = b"", signature: bytes = b"") -> EpochState:
        async with self._control:
            self.gate.commit(epoch, signed, signature)
        return await self.apply_commit(epoch)

    async def apply_commit(self, epoch: int) -> EpochState:
        """Switch to a prepared epoch (after the gate; the start-up epoch 0 comes here directly)."""
        async with self._control:
            if epoch not in self._epochs:
                raise PlanRejectedError(
                    f"node {self.node_id} cannot commit epoch {epoch}: it was never prepared"
                )
            self._committed.add(epoch)
            return EpochState(epoch, tuple(sorted(self._epochs[epoch])))

    async def release(self, epoch: int, signed: bytes = b"", signature: bytes = b"") -> EpochState:
        """Forget an epoch (released or aborted) and free every segment no remaining epoch uses."""
        async with self._control:
            self.gate.release(epoch, signed, signature)
            self._epochs.pop(epoch, None)
            self._committed.discard(epoch)
            used = frozenset().union(*self._epochs.values()) if self._epochs else frozenset()
            for key in [k for k in self._segments if k not in used]:
                segment = self._segments.pop(key)
                await asyncio.wait_for(self._worker.call(segment.drop_all), 30.0)
            return EpochState(epoch, tuple(sorted(used)))

    async def export_kv(self, session_id: str, start: int, end: int) -> KVTransfer:
        """A session's KV cache in blocks [start, end), copied on the compute thread (KV-cache transfer)."""
        segment = self._segments.get((start, end))
        if segment is None:
            raise SessionNotFoundError(f"node {self.node_id} hosts no blocks {start}:{end}")
        snap = await asyncio.wait_for(self._worker.call(partial(segment.export_kv, session_id)), 30.0)
        self.telemetry_state.count_out(snap.nbytes())
        return KVTransfer(start, end, snap)

    async def import_kv(self, transfer: KVTransfer) -> int:
        """Install a transferred session in blocks [start, end) of a prepared or committed epoch."""
        key = (transfer.start, transfer.end)
        if key not in self._epochs.get(transfer.epoch, frozenset()):
            raise PlanRejectedError(
                f"node {self.node_id} does not serve blocks {transfer.start}:{transfer.end} in epoch "
                f"{transfer.epoch}; KV can only be imported into a prepared or committed segment"
            )
        segment = self._segments[key]
        self.telemetry_state.count_in(transfer.snapshot.nbytes())
        call = partial(segment.import_kv, transfer.snapshot, time.monotonic())
        await asyncio.wait_for(self._worker.call(call), 30.0)
        return transfer.snapshot.length

    async def set_emulation(self, emulation_json: str) -> str:
        try:
            emulation = EmulationConfig.model_validate_json(emulation_json)
        except ValidationError as exc:
            raise ConfigError(f"bad emulation for node {self.node_id}: {exc.errors()[0]['msg']}") from None
        self.emulation = emulation
        self._peers.set_links(emulation.link_specs(), emulation.default_link.spec())
        return emulation.model_dump_json()

    async def profile_at_join(self, num_blocks: int) -> JoinProfile:
        """Time every block once on this node (see node/join_profile.py); reported with telemetry."""
        self.join_profile = await profile_blocks(
            num_blocks,
            self._source,
            self._worker,
            lambda runner, shape: HostedSegment(shape, runner, 1, self.config.max_step_tokens),
            min(1.0, self.emulation.background_load),
        )
        return self.join_profile

    async def probe(self, from_node_id: str, nbytes: int) -> None:
        """Answer a peer's link probe; the reply crosses the emulated link back to it."""
        await self._peers.link(from_node_id).transmit(PROBE_REPLY_BYTES)

    async def telemetry(self, peers: dict[str, str] | None = None) -> TelemetrySnapshot:
        """This node's report; ``peers`` (from the orchestrator) are the links to keep probing."""
        if peers:
            self.prober.set_peers(peers)
        snapshot = self.telemetry_state.snapshot(
            self._segments.values(),
            self._worker.queue_depth,
            self._epochs.keys(),
            self.emulation.background_load,
            busy_s_total=self._worker.busy_s,
            memory_cap_bytes=self.emulation.memory_cap_bytes,
        )
        cache = getattr(self._source, "cache", None)
        if cache is not None:
            snapshot = replace(
                snapshot, cached_blocks=cache.holdings(), shard_fetch_bps=cache.fetch_bps or 0.0
            )
        profile = self.join_profile
        return replace(
            snapshot,
            link_probes=self.prober.results(),
            profile_decode_s=profile.decode_s,
            profile_prefill_s=profile.prefill_s,
            profile_utilization=profile.utilization,
            background_utilization=self.emulation.background_load,
        )

    async def close(self) -> None:
        await self._peers.close()
        await asyncio.to_thread(self._worker.close)
