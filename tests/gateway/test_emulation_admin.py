"""PUT /v1/admin/emulation: the gateway's own sending direction re-shaped at run time, guarded like the
other admin writes, OpenAI-shaped 4xx on bad bodies, and invisible to what the orchestrator reads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from gateway_factories import GatewayFactory, assert_openai_error, fake_gateway_app
from gateway_fakes import ShapedChain

from edgesplit.gateway.text import TextCodec
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.link import LinkSpec

COLLAPSE = {"links": {"mec1": {"bandwidth_mbps": 8, "rtt_ms": 200}, "cloud": {"rtt_ms": 40}}}


@pytest.fixture
def shaped(make_gateway: GatewayFactory, codec: TextCodec) -> tuple[TestClient, ShapedChain]:
    client, chain = make_gateway(chain=ShapedChain(vocab=codec.vocab_size))
    assert isinstance(chain, ShapedChain)
    return client, chain


def test_an_update_replaces_every_link_of_the_transport(shaped: tuple[TestClient, ShapedChain]) -> None:
    client, chain = shaped
    resp = client.put("/v1/admin/emulation", json=COLLAPSE)
    assert resp.status_code == 200, resp.text
    assert resp.json()["links"]["mec1"] == {"bandwidth_mbps": 8, "rtt_ms": 200, "jitter_ms": 0}
    ((links, default),) = chain.replaced
    assert links == {"mec1": LinkSpec(8e6, 0.2), "cloud": LinkSpec(0.0, 0.04)}
    assert default == LinkSpec()  # peers not named are unshaped, as at start-up
    client.put("/v1/admin/emulation", json={"links": {}, "default": {"rtt_ms": 10}})
    assert chain.replaced[-1] == ({}, LinkSpec(0.0, 0.01))


def test_admin_token_or_loopback_guards_the_update(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, chain = make_gateway(chain=ShapedChain(vocab=codec.vocab_size), admin_token="s3cret")
    assert isinstance(chain, ShapedChain)
    err = assert_openai_error(client.put("/v1/admin/emulation", json=COLLAPSE), 403)
    assert err["type"] == "permission_error" and "/v1/admin/emulation" in err["message"]
    wrong = {"Authorization": "Bearer nope"}
    assert_openai_error(client.put("/v1/admin/emulation", json=COLLAPSE, headers=wrong), 403)
    assert chain.replaced == []
    right = {"Authorization": "Bearer s3cret"}
    assert client.put("/v1/admin/emulation", json=COLLAPSE, headers=right).status_code == 200
    assert len(chain.replaced) == 1

    open_client, open_chain = make_gateway(chain=ShapedChain(vocab=codec.vocab_size))  # no token

    async def remote_put() -> int:
        transport = httpx.ASGITransport(app=open_client.app, client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return (await http.put("/v1/admin/emulation", json=COLLAPSE)).status_code

    assert asyncio.run(remote_put()) == 403
    assert open_chain.replaced == []  # type: ignore[attr-defined]
    assert open_client.put("/v1/admin/emulation", json=COLLAPSE).status_code == 200


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("malformed json", b'{"links": ', "body"),
    ("not an object", [1, 2], "body"),
    ("no links", {}, "links"),
    ("negative rtt", {"links": {"mec1": {"rtt_ms": -1}}}, "rtt_ms"),
    ("bandwidth as text", {"links": {"mec1": {"bandwidth_mbps": "fast"}}}, "bandwidth_mbps"),
    ("unknown link key", {"links": {"mec1": {"loss": 0.1}}}, "loss"),
    ("unknown top key", {"links": {}, "nodes": {}}, "nodes"),
    ("unknown peer", {"links": {"mec9": {"rtt_ms": 5}}}, "mec9"),
    ("the source itself", {"links": {"device": {"rtt_ms": 5}}}, "to device"),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_bad_bodies_are_openai_400s_naming_the_problem_and_change_nothing(
    shaped: tuple[TestClient, ShapedChain], case: str, body: Any, named: str
) -> None:
    client, chain = shaped
    content = body if isinstance(body, bytes) else None
    resp = client.put("/v1/admin/emulation", content=content, json=None if content else body)
    err = assert_openai_error(resp, 400, "links")
    assert named in err["message"], (case, err["message"])
    assert chain.replaced == []


def test_a_transport_without_link_emulation_answers_409(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()  # the plain fake chain, like the in-process client: nothing to shape
    err = assert_openai_error(client.put("/v1/admin/emulation", json=COLLAPSE), 409)
    assert err["code"] == "no_link_emulation"


def test_the_update_leaves_no_trace_in_what_the_orchestrator_reads(
    shaped: tuple[TestClient, ShapedChain],
) -> None:
    client, _ = shaped
    before = (client.get("/v1/events?follow=false").text, client.get("/v1/observations").json())
    assert client.put("/v1/admin/emulation", json=COLLAPSE).status_code == 200
    after = (client.get("/v1/events?follow=false").text, client.get("/v1/observations").json())
    assert after == before


def test_a_replaced_link_really_delays_the_gateways_first_hop_send(model_dir: Path, codec: TextCodec) -> None:
    """Over the real gRPC client: the start-up link, then the new RTT and bandwidth, measured."""
    grpc_client = GrpcSegmentClient(source_node_id="device", links={"mec1": LinkSpec(400e6, 0.002)})
    app = fake_gateway_app(grpc_client, model_dir, codec)
    nbytes = 50_000

    async def send_s(peer: str) -> float:
        started = time.perf_counter()
        await grpc_client.link(peer).transmit(nbytes)
        return time.perf_counter() - started

    with TestClient(app) as client:
        assert asyncio.run(send_s("mec1")) < 0.05  # 1 ms + 1 ms serialisation at start-up
        assert client.put("/v1/admin/emulation", json=COLLAPSE).status_code == 200
        # rtt/2 + bytes/bandwidth = 0.1 s + 50 000 B × 8 / 8 Mbit/s = 0.15 s
        mec1 = asyncio.run(send_s("mec1"))
        assert 0.15 <= mec1 < 0.15 + 0.1, mec1
        cloud = asyncio.run(send_s("cloud"))  # RTT only: 20 ms one way
        assert 0.02 <= cloud < 0.02 + 0.1, cloud
        assert client.put("/v1/admin/emulation", json={"links": {}}).status_code == 200
        assert asyncio.run(send_s("mec1")) < 0.01  # back to unshaped: no wait at all
