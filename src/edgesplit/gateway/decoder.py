"""The decode loop of one request over the current route: prefill, decode steps, replay, clean-up.

Owns each session's token history (what makes re-prefill possible); knows nothing about HTTP or text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from edgesplit.errors import NodeUnavailableError, SessionNotFoundError, TransportError
from edgesplit.gateway.cutover import cutover_for
from edgesplit.gateway.observations import GatewayObservations
from edgesplit.gateway.routes import RouteBook
from edgesplit.model.steps import SamplingParams
from edgesplit.transport.base import ChainResult, ChainStep, HopTiming, Route, SegmentClient


@dataclass(frozen=True)
class DecodeLimits:
    """Per-request bounds the loop enforces (seconds)."""

    request_timeout_s: float = 60.0
    step_timeout_s: float = 10.0
    max_reprefills: int = 4
    end_session_timeout_s: float = 2.0
    failover_wait_s: float = 0.0
    """A failed node: wait up to this long for a newer committed epoch, then re-prefill on it."""
    chain_driven: bool = True
    """Let the chain feed each token back to its first hop itself (clients with ``run_steps``), instead
    of one gateway round trip per token."""
    halt_timeout_s: float = 2.0


@dataclass(frozen=True)
class GenerationRequest:
    """What one request asks of the chain, already tokenised and validated."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    sampling: SamplingParams = SamplingParams()
    privacy_high: bool = True


@dataclass
class GenerationState:
    """Filled in while a request runs: why it stopped and what each step measured."""

    finish_reason: str | None = None
    completion_tokens: int = 0
    reprefills: int = 0
    first_token_s: float | None = None
    routes: dict[int, Route] = field(default_factory=dict)
    """Every route (by epoch) a step of this request ran on."""
    timings: list[HopTiming] = field(default_factory=list)


@dataclass
class _Session:
    route: Route
    session_id: str
    fed: int = 0  # how many history tokens this session's KV caches hold


class Decoder:
    """Runs requests over a ``SegmentClient``; sessions always end on every node, whatever happens."""

    def __init__(
        self,
        client: SegmentClient,
        routes: RouteBook,
        eos_token_ids: frozenset[int],
        limits: DecodeLimits = DecodeLimits(),
        observations: GatewayObservations | None = None,
    ) -> None:
        self.observations = observations or GatewayObservations()
        self._client = client
        self._routes = routes
        self._eos = eos_token_ids
        self._limits = limits
        self._cleanup: set[asyncio.Task[None]] = set()
        self.cutover = cutover_for(client, lambda: self.observations.samples)
        self._chain_driven = limits.chain_driven and hasattr(client, "run_steps") and hasattr(client, "halt")
        """Run requests as chain-driven streams (the client can, and the limits allow it)."""

    async def generate(self, request: GenerationRequest, state: GenerationState) -> AsyncGenerator[int, None]:
        """Yield generated token ids (EOS excluded); sets ``state.finish_reason`` to stop or length.

        Raises ``TimeoutError`` past the request deadline and the client's errors otherwise.
        """
        started = time.monotonic()
        deadline = started + self._limits.request_timeout_s
        history = list(request.prompt_ids)
        session: _Session | None = None
        self.observations.live_sessions += 1
        try:
            while state.completion_tokens < request.max_tokens:
                # 1) Pick the route of the committed plan; a new epoch moves the session (re-prefill).
                route = await self._routes.wait_route(request.privacy_high, deadline, self.observations)
                if session is None or session.route.epoch != route.epoch:
                    old, session = session, _Session(route, f"gw-{uuid.uuid4().hex}")
                    if old is not None:  # KV transfer when cheaper; fed stays 0 (re-prefill) otherwise
                        session.fed = await self.cutover.move(
                            old.route, route, old.session_id, session.session_id, old.fed
                        )
                        self._end_later(old)
                # 2) Send what the session's caches lack: the whole history after a (re-)prefill.
                step = ChainStep(
                    session_id=session.session_id,
                    token_ids=tuple(history[session.fed :]),
                    position=session.fed,
                    sampling=_step_sampling(request.sampling, state.completion_tokens),
                    privacy_high=request.privacy_high,
                )
                count = request.max_tokens - state.completion_tokens if self._chain_driven else 1
                results = self._results(route, step, count, deadline)
                halting = count <= 1  # a single step has no stream to halt
                try:
                    async with contextlib.aclosing(results):
                        async for result in results:
                            # 4) Record, stop on EOS, else extend the history and hand the token out.
                            session.fed = len(history)
                            state.routes[route.epoch] = route
                            state.timings.extend(result.timings)
                            state.completion_tokens += 1
                            if state.first_token_s is None:
                                state.first_token_s = time.monotonic() - started
                            if result.token_id in self._eos:
                                state.finish_reason = "stop"
                                return
                            history.append(result.token_id)
                            yield result.token_id
                            if not halting and self._moved(route):  # stop the chain at a known token
                                halting = True
                                await self._halt(session)
                except (SessionNotFoundError, NodeUnavailableError, TransportError) as exc:
                    # 3) A hop lost the cache (restart, eviction) or died: replay the history on a fresh
                    #    session — after a died node, on the orchestrator's recovery plan (newer epoch).
                    state.reprefills += 1
                    if isinstance(exc, NodeUnavailableError) and exc.node_id:
                        self.observations.node_failed(exc.node_id)  # the orchestrator acts at once
                    if state.reprefills > self._limits.max_reprefills:
                        raise
                    if not isinstance(exc, SessionNotFoundError):
                        await self._await_newer_epoch(route.epoch, deadline, exc)
                    self._end_later(session)
                    session = None
                    continue
            state.finish_reason = "length"
        finally:
            self.observations.live_sessions -= 1
            if session is not None:
                self._end_later(session)

    async def _await_newer_epoch(self, epoch: int, deadline: float, error: Exception) -> None:
        """Wait (bounded by ``failover_wait_s`` and the request deadline) for a plan newer than ``epoch``."""
        until = min(deadline, time.monotonic() + self._limits.failover_wait_s)
        while True:
            plan = self._routes.plan
            if plan is not None and plan.route.epoch > epoch:
                return
            if time.monotonic() >= until:
                raise error
            await asyncio.sleep(0.05)

    def untrusted_privacy_hops(self, route: Route) -> set[str]:
        return self._routes.untrusted_privacy_hops(route)

    async def _results(
        self, route: Route, step: ChainStep, count: int, deadline: float
    ) -> AsyncGenerator[ChainResult, None]:
        """``step``'s result, then up to ``count - 1`` more that the chain feeds back itself."""
        since, tokens, context = time.perf_counter(), len(step.token_ids), step.position + len(step.token_ids)
        if count <= 1:
            result = await self._run_step(route, step, deadline)
            took_s = time.perf_counter() - since
            self.observations.step(route.epoch, took_s, tokens, context, list(result.timings))
            yield result
            return
        stream = self._client.run_steps(  # type: ignore[attr-defined]
            route, step, count, tuple(sorted(self._eos)), self._limits.step_timeout_s
        )
        async with contextlib.aclosing(stream):
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("request timed out")
                async with asyncio.timeout(min(self._limits.step_timeout_s, remaining) + 1.0):
                    try:
                        result = await anext(stream)
                    except StopAsyncIteration:
                        return
                # A fed-back step's latency: from the previous token's arrival to this one's.
                arrived = result.arrived_s or time.perf_counter()
                self.observations.step(route.epoch, arrived - since, tokens, context, list(result.timings))
                since, tokens, context = arrived, 1, context + 1
                yield result

    def _moved(self, route: Route) -> bool:
        plan = self._routes.plan
        return plan is not None and plan.route.epoch != route.epoch

    async def _halt(self, session: _Session) -> None:
        """Ask the chain to stop feeding ``session`` back; if it cannot, the next step's error or
        timeout moves the session anyway."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._limits.halt_timeout_s):
                await self._client.halt(session.route, session.session_id)  # type: ignore[attr-defined]

    async def _run_step(self, route: Route, step: ChainStep, deadline: float) -> ChainResult:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request timed out")
        timeout = min(self._limits.step_timeout_s, remaining)
        # The client gets the deadline; the outer guard catches an implementation that ignores it.
        async with asyncio.timeout(timeout + 1.0):
            return await self._client.run_step(route, step, timeout)

    def _end_later(self, session: _Session) -> None:
        """End a session on every hop without blocking (or being cancelled with) the request."""
        task = asyncio.get_running_loop().create_task(self._end(session))
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    async def _end(self, session: _Session) -> None:
        try:
            async with asyncio.timeout(self._limits.end_session_timeout_s):
                await self._client.end_session(session.route, session.session_id)
        except Exception:  # best effort: nodes also drop idle sessions by timeout
            pass

    async def drain(self) -> None:
        """Wait for pending session clean-ups (called at shutdown)."""
        while self._cleanup:
            await asyncio.gather(*list(self._cleanup), return_exceptions=True)


def _step_sampling(sampling: SamplingParams, index: int) -> SamplingParams:
    """A seeded request gets a distinct, reproducible seed per step."""
    if sampling.seed is None or sampling.greedy:
        return sampling
    return SamplingParams(sampling.temperature, sampling.top_p, sampling.seed + index)
