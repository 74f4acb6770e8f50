"""A privacy-high request on a plan that runs privacy blocks on an untrusted node waits (counted for
the orchestrator's privacy trigger) until a plan keeping them trusted is committed, and never runs on
the leaking chain; a node that fails a step is reported to the orchestrator at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from gateway_factories import three_hop_plan
from gateway_fakes import FakeChain, reference_ids

from edgesplit.errors import NodeUnavailableError, PrivacyViolationError
from edgesplit.gateway.decoder import DecodeLimits, Decoder, GenerationRequest, GenerationState
from edgesplit.gateway.routes import CommittedPlan, RouteBook, route_from_segments
from edgesplit.transport.base import ChainResult, ChainStep, Route

VOCAB = 500
PROMPT = (11, 12, 13)
TRUSTED = frozenset({"device", "mec1"})
PRIVACY_BLOCKS = frozenset({0, 1, 5})


def leaky_plan(epoch: int = 1) -> CommittedPlan:
    """Block 1 (privacy-critical) on the untrusted cloud."""
    return CommittedPlan(
        route_from_segments(epoch, [("device", "127.0.0.1:1", 0, 1), ("cloud", "127.0.0.1:3", 1, 5),
                                    ("device", "127.0.0.1:1", 5, 6)])
    )  # fmt: skip


async def wait_until(check: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_privacy_high_waits_for_a_trusted_plan_and_never_runs_on_the_leaking_one() -> None:
    routes = RouteBook(TRUSTED, PRIVACY_BLOCKS, privacy_wait_s=10.0)
    routes.commit(leaky_plan(1))
    chain = FakeChain(vocab=VOCAB)
    decoder = Decoder(chain, routes, frozenset(), DecodeLimits())

    async def main() -> tuple[list[int], GenerationState, list[int]]:
        state = GenerationState()
        request = GenerationRequest(PROMPT, 5, privacy_high=True)

        async def run() -> list[int]:
            return [t async for t in decoder.generate(request, state)]

        task = asyncio.create_task(run())
        await wait_until(lambda: decoder.observations.snapshot(0)["privacy_high_waiting"] == 1)
        steps_while_waiting = chain.steps
        routes.commit(three_hop_plan(epoch=2))
        tokens = await asyncio.wait_for(task, 10)
        await decoder.drain()
        assert decoder.observations.snapshot(0)["privacy_high_recent"] is True  # plans stay private
        return tokens, state, [steps_while_waiting, decoder.observations.privacy_high_waiting]

    tokens, state, (steps_while_waiting, waiting_after) = asyncio.run(main())
    assert steps_while_waiting == 0
    assert tokens == reference_ids(list(PROMPT), 5, VOCAB)
    assert set(state.routes) == {2} and set(chain.epochs_seen) == {2}
    assert waiting_after == 0


def test_privacy_none_is_served_on_the_leaking_plan_without_waiting() -> None:
    routes = RouteBook(TRUSTED, PRIVACY_BLOCKS, privacy_wait_s=10.0)
    routes.commit(leaky_plan(1))
    decoder = Decoder(FakeChain(vocab=VOCAB), routes, frozenset(), DecodeLimits())

    async def main() -> GenerationState:
        state = GenerationState()
        async for _ in decoder.generate(GenerationRequest(PROMPT, 3, privacy_high=False), state):
            pass
        return state

    started = time.monotonic()
    assert set(asyncio.run(main()).routes) == {1}
    assert time.monotonic() - started < 5
    assert decoder.observations.snapshot(0)["privacy_high_recent"] is False


def test_the_wait_is_bounded_and_then_refused() -> None:
    routes = RouteBook(TRUSTED, PRIVACY_BLOCKS, privacy_wait_s=0.3)
    routes.commit(leaky_plan(1))
    chain = FakeChain(vocab=VOCAB)
    decoder = Decoder(chain, routes, frozenset(), DecodeLimits())

    async def main() -> None:
        async for _ in decoder.generate(GenerationRequest(PROMPT, 3), GenerationState()):
            pass

    started = time.monotonic()
    with pytest.raises(PrivacyViolationError, match="cloud"):
        asyncio.run(main())
    assert 0.25 <= time.monotonic() - started < 5
    assert chain.steps == 0 and decoder.observations.privacy_high_waiting == 0


@dataclass
class LosesMec1(FakeChain):
    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        if route.epoch == 1:
            error = NodeUnavailableError("node cpu1 could not forward to mec1")
            error.node_id = "mec1"
            raise error
        return await super().run_step(route, step, timeout_s)


def test_a_failed_node_is_reported_in_the_observations() -> None:
    routes = RouteBook(TRUSTED, PRIVACY_BLOCKS)
    routes.commit(three_hop_plan(epoch=1))
    decoder = Decoder(LosesMec1(vocab=VOCAB), routes, frozenset(), DecodeLimits(failover_wait_s=10.0))

    async def main() -> list[str]:
        state = GenerationState()
        task = asyncio.create_task(decoder.generate(GenerationRequest(PROMPT, 3), state).__anext__())
        await wait_until(lambda: decoder.observations.snapshot(0)["failed_nodes"])
        failed = decoder.observations.snapshot(0)["failed_nodes"]
        routes.commit(three_hop_plan(epoch=2))
        await asyncio.wait_for(task, 10)
        return list(failed)

    assert asyncio.run(main()) == ["mec1"]
