"""Privacy enforced at the data plane: an untrusted node refuses privacy-high steps on critical blocks.

Real gRPC node agents (in-process) over the built-in tiny Llama; the gateway's own route check is the
first line, the node's refusal the second (a stale or wrong gateway view must not leak).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dataplane_nodes import NodeSpec, greedy, reference_tokens, running_nodes
from fastapi.testclient import TestClient

from edgesplit.errors import PrivacyViolationError
from edgesplit.gateway.app import create_app
from edgesplit.gateway.config import GatewayConfig, GatewayNodeConfig
from edgesplit.gateway.routes import CommittedPlan
from edgesplit.gateway.text import TextCodec
from edgesplit.node.agent import NodeAgent
from edgesplit.transport.base import ChainResult, ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.wire.codec import envelope_from_pb, envelope_to_pb
from edgesplit.wire.gen import node_pb2
from edgesplit.wire.messages import PlanSegment, PlanSpec, StepEnvelope

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

MODEL = "builtin:llama-tiny"  # 4 layers -> 6 blocks
PRIVACY = (0, 2, 5)  # embedding, layer 1, head
PROMPT = [5, 17, 42, 99, 7, 300]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from edgesplit.model.builtin import resolve_model

    return resolve_model(MODEL)


def _specs(untrusted_middle: bool) -> list[NodeSpec]:
    return [
        NodeSpec("device", (0, 2), True, PRIVACY),
        NodeSpec("cloud", (2, 4), not untrusted_middle, PRIVACY),
        NodeSpec("mec", (4, 6), True, PRIVACY),
    ]


async def _move_to_epoch_1(route: Route, agents: dict[str, NodeAgent]) -> Route:
    """The gateway only takes plans of epoch >= 1: re-commit the start-up chain as epoch 1."""
    plan = PlanSpec(1, tuple(PlanSegment(h.node_id, h.start, h.end) for h in route.hops))
    for agent in agents.values():
        await agent.service.apply_prepare(plan)
        await agent.service.apply_commit(1)
    return Route(1, route.hops)


def _held(agent: object, start: int, end: int) -> set[str]:
    return set(agent.service._segments[(start, end)].sessions)  # type: ignore[attr-defined]


async def test_untrusted_node_refuses_privacy_high_but_serves_privacy_none(model_dir: Path) -> None:
    expected = reference_tokens(model_dir, PROMPT, 8)
    async with running_nodes(_specs(untrusted_middle=True), model_dir) as (route, agents):
        client = GrpcSegmentClient()
        try:
            high = asyncio.create_task(greedy(client, route, "secret", PROMPT, 8, privacy_high=True))
            none = asyncio.create_task(greedy(client, route, "public", PROMPT, 8, privacy_high=False))
            with pytest.raises(PrivacyViolationError) as refused:
                await high
            assert await none == expected
            assert "cloud" in str(refused.value) and "2" in str(refused.value)
            # The refused step never reached the untrusted node's KV cache.
            assert "secret" not in _held(agents["cloud"], 2, 4)
            # The node keeps refusing: a second privacy-high session, a decode step this time.
            with pytest.raises(PrivacyViolationError):
                await client.run_step(route, ChainStep("again", (1, 2, 3), 0), 30.0)
            assert await greedy(client, route, "public-2", PROMPT, 4, privacy_high=False) == expected[:4]
        finally:
            await client.close()


async def test_trusted_chain_serves_privacy_high(model_dir: Path) -> None:
    expected = reference_tokens(model_dir, PROMPT, 6)
    async with running_nodes(_specs(untrusted_middle=False), model_dir) as (route, _):
        client = GrpcSegmentClient()
        try:
            assert await greedy(client, route, "s", PROMPT, 6, privacy_high=True) == expected
        finally:
            await client.close()


async def test_untrusted_node_without_critical_blocks_serves_privacy_high(model_dir: Path) -> None:
    specs = [
        NodeSpec("device", (0, 3), True, PRIVACY),
        NodeSpec("cloud", (3, 5), False, PRIVACY),  # blocks 3, 4: not critical
        NodeSpec("mec", (5, 6), True, PRIVACY),
    ]
    expected = reference_tokens(model_dir, PROMPT, 5)
    async with running_nodes(specs, model_dir) as (route, _):
        client = GrpcSegmentClient()
        try:
            assert await greedy(client, route, "s", PROMPT, 5, privacy_high=True) == expected
        finally:
            await client.close()


def test_a_step_without_the_privacy_tag_counts_as_privacy_high() -> None:
    """Fail closed: a sender that never heard of the tag (field absent) gets privacy 'high'."""
    bare = node_pb2.StepRequest(session_id="s", inputs=node_pb2.Tensor(dtype="int64", shape=[0]))
    env, _ = envelope_from_pb(bare)
    assert env.privacy_high is True
    relaxed, _ = envelope_from_pb(envelope_to_pb(_with_privacy(env, False)))
    assert relaxed.privacy_high is False
    strict, _ = envelope_from_pb(envelope_to_pb(_with_privacy(env, True)))
    assert strict.privacy_high is True


def _with_privacy(env: StepEnvelope, high: bool) -> StepEnvelope:
    import dataclasses

    import torch

    return dataclasses.replace(env, inputs=torch.tensor([1, 2], dtype=torch.int64), privacy_high=high)


async def test_gateway_with_a_wrong_view_of_trust_still_never_serves(model_dir: Path) -> None:
    """The gateway believes every node trusted; the untrusted node's refusal becomes a clear 503."""
    async with running_nodes(_specs(untrusted_middle=True), model_dir) as (start_route, agents):
        route = await _move_to_epoch_1(start_route, agents)
        config = GatewayConfig(
            model_name=MODEL,
            model_path=model_dir,
            nodes=[GatewayNodeConfig(id=h.node_id, address=h.address, trusted=True) for h in route.hops],
            privacy_blocks=list(PRIVACY),
        )
        client = GrpcSegmentClient()
        app = create_app(config, client, route=route)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
                refused = await http.post("/v1/completions", json=body)
                assert refused.status_code == 503, refused.text
                error = refused.json()["error"]
                assert error["type"] == "privacy_unavailable_error"
                assert error["code"] == "privacy_violation"
                assert "not trusted" in error["message"] and "cloud" in error["message"]
                assert "choices" not in refused.json()
                streamed = await http.post("/v1/completions", json={**body, "stream": True})
                assert streamed.status_code == 503
                assert streamed.json()["error"]["code"] == "privacy_violation"
                served = await http.post("/v1/completions", json={**body, "privacy": "none"})
                assert served.status_code == 200, served.text
                expected = TextCodec.from_checkpoint(model_dir).decode(reference_tokens(model_dir, PROMPT, 4))
                assert served.json()["choices"][0]["text"] == expected
        finally:
            await client.close()


class _CountingChain:
    """A SegmentClient that answers fixed tokens and records the epoch of every step it ran."""

    def __init__(self, on_step: Callable[[int], None] | None = None) -> None:
        self.epochs: list[int] = []
        self._on_step = on_step

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        self.epochs.append(route.epoch)
        if self._on_step is not None:
            self._on_step(len(self.epochs))
        return ChainResult(step.session_id, 100 + len(self.epochs) % 7)

    async def end_session(self, route: Route, session_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def _gateway(model_dir: Path, chain: _CountingChain, plan: Route, privacy_wait_s: float) -> TestClient:
    nodes = [
        GatewayNodeConfig(id="device", address="127.0.0.1:1", trusted=True, source=True),
        GatewayNodeConfig(id="cloud", address="127.0.0.1:2", trusted=False),
    ]
    config = GatewayConfig(
        model_name=MODEL,
        model_path=model_dir,
        nodes=nodes,
        privacy_blocks=list(PRIVACY),
        privacy_wait_s=privacy_wait_s,
    )
    return TestClient(create_app(config, chain, route=plan))  # type: ignore[arg-type]


def _trusted_plan(epoch: int) -> Route:
    return Route(epoch, (Hop("device", "127.0.0.1:1", 0, 6),))


def _leaking_plan(epoch: int) -> Route:
    return Route(epoch, (Hop("device", "127.0.0.1:1", 0, 2), Hop("cloud", "127.0.0.1:2", 2, 6)))


@pytest.mark.parametrize("stream", [False, True])
def test_no_compliant_plan_in_time_is_a_clear_error_never_a_served_request(
    model_dir: Path, stream: bool
) -> None:
    chain = _CountingChain()
    with _gateway(model_dir, chain, _leaking_plan(1), privacy_wait_s=0.3) as client:
        body = {"model": MODEL, "prompt": "hello", "max_tokens": 3, "stream": stream}
        started = time.monotonic()
        resp = client.post("/v1/completions", json=body)
        waited = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        error = resp.json()["error"]
        assert error["type"] == "privacy_unavailable_error" and error["code"] == "privacy_violation"
        assert "privacy-critical" in error["message"] and "cloud" in error["message"]
        assert resp.headers.get("x-should-retry") == "false"
        assert 0.25 <= waited < 10
        assert chain.epochs == []  # nothing ran on the leaking chain
        assert client.post("/v1/completions", json={**body, "privacy": "none"}).status_code == 200
        assert chain.epochs and set(chain.epochs) == {1}


def test_a_plan_turning_leaky_mid_stream_ends_the_stream_with_the_privacy_error(model_dir: Path) -> None:
    """Three tokens on the trusted plan, then a leaking plan is committed: no step runs on it."""
    holder: dict[str, TestClient] = {}

    def leak_after_three(steps: int) -> None:
        if steps == 3:
            holder["client"].app.state.routes.commit(CommittedPlan(_leaking_plan(2)))  # type: ignore[attr-defined]

    chain = _CountingChain(leak_after_three)
    with _gateway(model_dir, chain, _trusted_plan(1), privacy_wait_s=0.2) as client:
        holder["client"] = client
        body = {"model": MODEL, "prompt": "hello", "max_tokens": 8, "stream": True}
        resp = client.post("/v1/completions", json=body)
        assert resp.status_code == 200
        events = [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "privacy_violation" and "cloud" in error["message"]
        assert chain.epochs == [1, 1, 1]
