"""A node of the route dies mid-generation: with ``failover_wait_s`` the decode loop waits for the
orchestrator's recovery epoch and re-prefills on it (same tokens); without, the error surfaces at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from gateway_factories import three_hop_plan
from gateway_fakes import FakeChain, reference_ids

from edgesplit.errors import NodeUnavailableError
from edgesplit.gateway.decoder import DecodeLimits, Decoder, GenerationRequest, GenerationState
from edgesplit.gateway.routes import RouteBook
from edgesplit.transport.base import ChainResult, ChainStep, Route

VOCAB = 500
PROMPT = (11, 12, 13)


@dataclass
class DiesOnEpochOne(FakeChain):
    """Epoch 1's chain loses a node after 3 generated tokens; later epochs serve normally."""

    failures: int = 0
    prefills: list[tuple[int, int]] = field(default_factory=list)
    """(epoch, tokens) of every step that starts a session's cache."""

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        if step.position == 0:
            self.prefills.append((route.epoch, len(step.token_ids)))
        if route.epoch == 1 and sum(self.generated.values()) >= 3:
            self.failures += 1
            raise NodeUnavailableError("node mec1 at 127.0.0.1:2: connection refused")
        return await super().run_step(route, step, timeout_s)


async def generate(decoder: Decoder, n: int) -> tuple[list[int], GenerationState]:
    state = GenerationState()
    out = [t async for t in decoder.generate(GenerationRequest(PROMPT, n), state)]
    return out, state


def routes_at_epoch_one() -> RouteBook:
    routes = RouteBook(frozenset({"device", "mec1"}), frozenset({0, 1, 5}))
    routes.commit(three_hop_plan(epoch=1))
    return routes


def test_a_dead_node_waits_for_the_recovery_plan_and_re_prefills() -> None:
    chain, routes = DiesOnEpochOne(vocab=VOCAB), routes_at_epoch_one()
    decoder = Decoder(chain, routes, frozenset(), DecodeLimits(failover_wait_s=10.0))

    async def orchestrator() -> None:  # commits the recovery plan once the failure was seen
        while not chain.failures:
            await asyncio.sleep(0.01)
        routes.commit(three_hop_plan(epoch=2))

    async def main() -> tuple[list[int], GenerationState]:
        recovery = asyncio.create_task(orchestrator())
        result = await generate(decoder, 8)
        await recovery
        await decoder.drain()
        return result

    tokens, state = asyncio.run(main())
    assert tokens == reference_ids(list(PROMPT), 8, VOCAB)
    assert set(state.routes) == {1, 2} and state.reprefills == 1
    # The re-prefill on epoch 2 carried the whole history: the prompt + the 3 tokens made on epoch 1.
    assert chain.prefills == [(1, len(PROMPT)), (2, len(PROMPT) + 3)]


def test_without_failover_wait_the_error_surfaces_at_once() -> None:
    chain, routes = DiesOnEpochOne(vocab=VOCAB), routes_at_epoch_one()
    decoder = Decoder(chain, routes, frozenset(), DecodeLimits())
    started = time.monotonic()
    with pytest.raises(NodeUnavailableError):
        asyncio.run(generate(decoder, 8))
    assert time.monotonic() - started < 1.0
