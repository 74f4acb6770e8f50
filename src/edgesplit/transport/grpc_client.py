"""The gRPC SegmentClient: sends a step to the first hop and awaits its result on a ResultSink.

Nodes forward activations node to node; the last node (or any node that fails) delivers the step's
outcome to this client's tiny sink server, so each decode step crosses each hop once and one small
message returns. With ``run_steps`` the last node also feeds each token straight back to the first
(chain-driven decoding): the gateway sends a request's first step only and listens. Every wait has a
deadline; a failure anywhere surfaces as the mapped error.

Steps for the same first hop submitted within a few event-loop turns (concurrent sessions resuming
after one batched result) leave as one ``StepMany`` call, so the first node sees them as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
import torch

from edgesplit.errors import (
    EdgesplitError,
    NodeUnavailableError,
    SegmentSpecError,
    StreamHaltedError,
    TransportError,
)
from edgesplit.transport.base import ChainResult, ChainStep, Route
from edgesplit.transport.link import LinkShaper, LinkSpec
from edgesplit.transport.outbox import Outbox
from edgesplit.transport.peers import PeerPool
from edgesplit.transport.tls import SINK_POLICY, TlsConfig, bind, channel_credentials, new_server
from edgesplit.wire.errors import error_from_code
from edgesplit.wire.messages import StepEnvelope, StepOutcome
from edgesplit.wire.servicers import add_sink_service
from edgesplit.wire.stubs import CHANNEL_OPTIONS, EncodedStep, encode_step

END_SESSION_TIMEOUT_S = 5.0
COALESCE_TURNS = 3
"""Loop turns a first-hop send waits for more steps (sessions resuming a turn or two apart)."""


class GrpcSegmentClient:
    """SegmentClient over real node processes.

    ``source_node_id`` is the node the gateway runs on (nodes shape their replies on the link to
    it); ``links`` are the emulated links from that node to each first hop. ``sink_host`` is the
    address nodes can reach this process at (``sink_listen`` is what it binds).
    ``max_steps_per_call`` splits a coalesced send into near-equal calls of at most that many steps
    (micro-batch groups that can pipeline through the chain); None sends each turn's steps as one.
    """

    def __init__(
        self,
        source_node_id: str = "gateway",
        links: dict[str, LinkSpec] | None = None,
        sink_listen: str = "127.0.0.1:0",
        sink_host: str | None = None,
        tls: TlsConfig | None = None,
        max_steps_per_call: int | None = None,
    ) -> None:
        self.source_node_id = source_node_id
        self._tls = tls
        self._peers = PeerPool(links, own_id=source_node_id, credentials=channel_credentials(tls))
        self._sink_listen = sink_listen
        self._sink_host = sink_host
        self._server: grpc.aio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self.reply_address = ""
        # step id -> (session, (result, arrival time))
        self._pending: dict[int, tuple[str, asyncio.Future[tuple[StepOutcome, float]]]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._max_steps_per_call = max_steps_per_call
        self._outboxes: dict[str, Outbox[EncodedStep]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls_sent = 0
        """Step-carrying gRPC calls made to first hops (each may carry many steps)."""

    async def start(self) -> str:
        """Start the result sink (idempotent); returns the address nodes reply to."""
        if self._server is not None:
            return self.reply_address
        # Every first caller awaits the same start, so concurrent first steps resume together.
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start_sink())
        try:
            await asyncio.shield(self._starting)
        except BaseException:
            if self._starting.done():
                self._starting = None
            raise
        return self.reply_address

    async def _start_sink(self) -> None:
        server = new_server(self._tls, CHANNEL_OPTIONS, SINK_POLICY)
        add_sink_service(server, self._on_outcome)
        port = bind(server, self._sink_listen, self._tls)
        if port == 0:
            raise TransportError(f"the gateway's result sink cannot listen on {self._sink_listen}")
        await server.start()
        host = self._sink_host or self._sink_listen.rsplit(":", 1)[0]
        if host in ("0.0.0.0", "[::]", "::", ""):
            host = "127.0.0.1"
        self.reply_address = f"{host}:{port}"
        self._server = server

    def set_links(self, links: dict[str, LinkSpec], default_link: LinkSpec | None = None) -> None:
        """Change the emulated links from the source node at run time (steps already waiting on a
        link keep the delay they were charged)."""
        self._peers.set_links(links, default_link or LinkSpec())

    def link(self, peer_node_id: str) -> LinkShaper:
        """The shaper a first step to ``peer_node_id`` waits on (what ``set_links`` changes)."""
        return self._peers.link(peer_node_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _outbox(self, address: str) -> Outbox[EncodedStep]:
        box = self._outboxes.get(address)
        if box is None:
            stub = self._peers.node(address)

            async def send(steps: list[EncodedStep], timeout_s: float) -> None:
                calls = math.ceil(len(steps) / (self._max_steps_per_call or len(steps)))
                bounds = [round(i * len(steps) / calls) for i in range(calls + 1)]
                self.calls_sent += calls
                await asyncio.gather(
                    *(stub.send_steps(steps[a:b], timeout_s) for a, b in itertools.pairwise(bounds))
                )

            box = self._outboxes[address] = Outbox(send, self._spawn, defer_turns=COALESCE_TURNS)
        return box

    def _on_outcome(self, outcome: StepOutcome) -> None:
        session_id, future = self._pending.get(outcome.step_id, ("", None))
        if future is not None and not future.done() and session_id == outcome.session_id:
            future.set_result((outcome, time.perf_counter()))

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        """One step over the chain; raises the error a hop reported (e.g. SessionNotFoundError)."""
        async with contextlib.aclosing(self.run_steps(route, step, 1, (), timeout_s)) as results:
            async for result in results:
                return result
        raise StreamHaltedError(f"session {step.session_id} is halted")  # only a fed-back step can be

    async def run_steps(
        self, route: Route, step: ChainStep, count: int, stop_token_ids: tuple[int, ...], timeout_s: float
    ) -> AsyncIterator[ChainResult]:
        """Chain-driven decoding: ``step``, then up to ``count - 1`` steps the last hop feeds back to
        hop 0 itself (ending after a token of ``stop_token_ids``). Yields each result as it arrives;
        ends early, without error, when the session was halted (``halt``). ``timeout_s`` bounds each
        step; a hop's error is raised as for ``run_step``."""
        if self._closed:
            raise TransportError("the gRPC segment client is closed")
        if not route.hops:
            raise SegmentSpecError("a route needs at least one hop")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        await self.start()
        started = time.perf_counter()
        base = next(self._ids)
        self._ids = itertools.count(base + count)  # ids base .. base + count - 1 belong to this run
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[StepOutcome, float]]] = []
        for i in range(count):
            futures.append(loop.create_future())
            self._pending[base + i] = (step.session_id, futures[i])
        try:
            await self._send_first(route, step, base, count - 1, stop_token_ids, timeout_s, started)
            for i, future in enumerate(futures):
                wait_s = timeout_s - (time.perf_counter() - started) if i == 0 else timeout_s
                try:
                    outcome, arrived = await asyncio.wait_for(future, max(wait_s, 1e-3))
                except TimeoutError:
                    raise TransportError(
                        f"step of session {step.session_id} got no result within {timeout_s:.3f} s "
                        f"over {' -> '.join(h.node_id for h in route.hops)}"
                    ) from None
                if outcome.error_code == StreamHaltedError.code:
                    return
                if not outcome.ok:
                    where = f" (at node {outcome.failed_node_id})" if outcome.failed_node_id else ""
                    error = error_from_code(outcome.error_code, f"{outcome.error_message}{where}")
                    error.node_id = outcome.failed_node_id
                    raise error
                yield ChainResult(step.session_id, outcome.token_id, outcome.timings, arrived)
                if outcome.token_id in stop_token_ids:
                    return
        finally:
            for i in range(count):
                self._pending.pop(base + i, None)

    async def _send_first(
        self,
        route: Route,
        step: ChainStep,
        step_id: int,
        continue_steps: int,
        stop_token_ids: tuple[int, ...],
        timeout_s: float,
        started: float,
    ) -> None:
        first = route.hops[0]
        env = StepEnvelope(
            session_id=step.session_id,
            step_id=step_id,
            route=route,
            hop_index=0,
            position=step.position,
            inputs=torch.tensor(step.token_ids, dtype=torch.int64),
            sampling=step.sampling,
            reply_address=self.reply_address,
            reply_node_id=self.source_node_id,
            budget_s=timeout_s,
            privacy_high=step.privacy_high,
            continue_steps=continue_steps,
            stop_token_ids=stop_token_ids,
            continue_budget_s=timeout_s if continue_steps else 0.0,
        )
        encoded = encode_step(env)
        await self._peers.link(first.node_id).transmit(encoded.nbytes)
        encoded.message.budget_s = timeout_s - (time.perf_counter() - started)
        try:
            await self._outbox(first.address).submit(encoded, max(encoded.message.budget_s, 1e-3))
        except EdgesplitError as exc:
            lost = NodeUnavailableError(f"first hop {first.node_id} at {first.address}: {exc}")
            lost.node_id = first.node_id
            raise lost from exc

    async def halt(self, route: Route, session_id: str) -> None:
        """Stop the chain feeding ``session_id``'s tokens back (its caches stay; see ``run_steps``)."""
        addresses = {hop.address for hop in route.hops}
        await asyncio.gather(
            *(self._peers.node(a).halt_session(session_id, END_SESSION_TIMEOUT_S) for a in sorted(addresses))
        )

    async def end_session(self, route: Route, session_id: str) -> None:
        """Free the session on every node of the route; a node that is gone has nothing to free."""
        addresses = {hop.address for hop in route.hops}

        async def drop(address: str) -> None:
            with contextlib.suppress(TransportError):
                await self._peers.node(address).end_session(session_id, END_SESSION_TIMEOUT_S)

        await asyncio.gather(*(drop(a) for a in sorted(addresses)))

    async def ping(self, address: str, payload: bytes = b"", timeout_s: float = 5.0) -> bytes:
        """Round trip one Ping to a node (the fixed per-message overhead)."""
        return await self._peers.node(address).ping(payload, timeout_s)

    async def close(self) -> None:
        self._closed = True
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(
                    TransportError("the gRPC segment client closed while a step was running")
                )
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._outboxes.clear()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        await self._peers.close()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
