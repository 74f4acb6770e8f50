"""Chain-driven decoding: the last hop feeds each token back to hop 0, the gateway only listens.

Reference: the per-step path (one gateway round trip per token), itself checked against HF generate
by the golden tests. The chain-driven path must give the same tokens, greedy and seeded, with one
gateway call per request; a halted session stops at a known token with consistent caches.
"""

from __future__ import annotations

import pytest
import torch
from two_nodes import OLD, route_of, two_nodes

from edgesplit.gateway.decoder import DecodeLimits, Decoder, GenerationRequest, GenerationState
from edgesplit.model.steps import SamplingParams
from edgesplit.node.feedback import fed_back_step
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import StepEnvelope

pytestmark = pytest.mark.anyio

PROMPT = tuple(range(3, 20))
TOKENS = 10


async def _generate(
    chain_driven: bool, sampling: SamplingParams, eos: frozenset[int] = frozenset()
) -> tuple[list[int], GenerationState, int]:
    async with two_nodes() as (_agents, book):
        client = GrpcSegmentClient()
        decoder = Decoder(client, book, eos, DecodeLimits(chain_driven=chain_driven))
        state = GenerationState()
        try:
            request = GenerationRequest(PROMPT, TOKENS, sampling)
            tokens = [t async for t in decoder.generate(request, state)]
            await decoder.drain()
        finally:
            await client.close()
        return tokens, state, client.calls_sent


@pytest.mark.parametrize("sampling", [SamplingParams(), SamplingParams(0.9, 0.95, seed=11)])
async def test_chain_driven_tokens_equal_per_step_tokens_with_one_call(sampling: SamplingParams) -> None:
    per_step, _, per_step_calls = await _generate(False, sampling)
    chained, state, chained_calls = await _generate(True, sampling)
    assert len(per_step) == TOKENS
    assert chained == per_step
    assert (per_step_calls, chained_calls) == (TOKENS, 1)
    assert state.finish_reason == "length" and state.completion_tokens == TOKENS


async def test_an_eos_token_ends_a_chain_driven_request() -> None:
    reference, _, _ = await _generate(False, SamplingParams())
    eos = reference[3]
    first = reference.index(eos)
    tokens, state, _ = await _generate(True, SamplingParams(), frozenset({eos}))
    assert tokens == reference[:first]
    assert state.finish_reason == "stop"


async def test_a_halted_session_stops_at_a_token_the_gateway_has_with_equal_caches() -> None:
    async with two_nodes() as (agents, _book):
        route = route_of(agents, 1, OLD)
        client = GrpcSegmentClient()
        admins = [NodeAdmin(a.address) for a in agents]
        try:
            got: list[int] = []
            async for result in client.run_steps(route, ChainStep("h", PROMPT, 0), 200, (), 30.0):
                got.append(result.token_id)
                if len(got) == 3:
                    await client.halt(route, "h")
            assert 3 <= len(got) < 200  # stopped without an error, long before the count ran out
            # Every hop's cache holds the prompt and every token but the last (which nobody has fed).
            snaps = [await a.export_kv("h", s, e, 10.0) for a, (s, e) in zip(admins, OLD, strict=True)]
            lengths = [snap.snapshot.length for snap in snaps]
            assert lengths == [len(PROMPT) + len(got) - 1] * 2
        finally:
            for admin in admins:
                await admin.close()
            await client.close()


def _envelope(**fields: object) -> StepEnvelope:
    base: dict[str, object] = dict(
        session_id="s",
        step_id=7,
        route=Route(3, (Hop("a", "x", 0, 6),)),
        hop_index=0,
        position=20,
        inputs=torch.zeros(4, 8),
        sampling=SamplingParams(),
        reply_address="gw",
        reply_node_id="device",
        budget_s=0.5,
        continue_steps=2,
        stop_token_ids=(2,),
        continue_budget_s=9.0,
    )
    base.update(fields)
    return StepEnvelope(**base)  # type: ignore[arg-type]


def test_the_fed_back_step_follows_the_token_at_the_next_position() -> None:
    nxt = fed_back_step(_envelope(), 42)
    assert nxt is not None
    assert (nxt.step_id, nxt.hop_index, nxt.position, nxt.continue_steps) == (8, 0, 24, 1)
    assert nxt.inputs is not None and nxt.inputs.tolist() == [42]
    assert nxt.continued and nxt.budget_s == 9.0 and nxt.timings == ()
    assert fed_back_step(_envelope(), 2) is None  # a stop token
    assert fed_back_step(_envelope(continue_steps=0), 42) is None  # the count is spent
    # Seeded sampling: the next step draws with seed + 1, as the gateway's per-step seeds do.
    seeded = fed_back_step(_envelope(sampling=SamplingParams(0.8, 1.0, seed=5)), 42)
    assert seeded is not None and seeded.sampling.seed == 6
    greedy = fed_back_step(_envelope(sampling=SamplingParams(0.0, 1.0, seed=5)), 42)
    assert greedy is not None and greedy.sampling.seed == 5
