"""Bad input gets an OpenAI-shaped 4xx, chain failures a mapped 5xx, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import httpx
import pytest
from gateway_factories import MODEL, GatewayFactory, assert_openai_error
from gateway_fakes import FakeChain, reference_ids

from edgesplit import errors
from edgesplit.gateway.error_map import ERROR_TABLE, to_api_error
from edgesplit.gateway.text import TextCodec

GOOD = {"model": MODEL, "prompt": "Hello", "max_tokens": 3}


BAD_COMPLETIONS: list[tuple[str, Any, int, str | None]] = [
    ("malformed json", b'{"model": "x", "prompt": ', 400, None),
    ("json array", b"[1, 2]", 400, None),
    ("unknown model", {**GOOD, "model": "gpt-9"}, 404, "model"),
    ("negative max_tokens", {**GOOD, "max_tokens": -5}, 400, "max_tokens"),
    ("zero max_tokens", {**GOOD, "max_tokens": 0}, 400, "max_tokens"),
    ("huge max_tokens", {**GOOD, "max_tokens": 10**9}, 400, "max_tokens"),
    ("string max_tokens", {**GOOD, "max_tokens": "many"}, 400, "max_tokens"),
    ("temperature too high", {**GOOD, "temperature": 7}, 400, "temperature"),
    ("negative temperature", {**GOOD, "temperature": -1}, 400, "temperature"),
    ("top_p zero", {**GOOD, "top_p": 0}, 400, "top_p"),
    ("missing prompt", {"model": MODEL}, 400, "prompt"),
    ("missing model", {"prompt": "hi"}, 400, "model"),
    ("n > 1", {**GOOD, "n": 2}, 400, "n"),
    ("logprobs", {**GOOD, "logprobs": 3}, 400, "logprobs"),
    ("bad privacy tag", {**GOOD, "privacy": "medium"}, 400, "privacy"),
    ("token id outside vocab", {**GOOD, "prompt": [1, 10**7]}, 400, "prompt"),
    ("five stops", {**GOOD, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("prompt over the limit", {**GOOD, "prompt": "word " * 400}, 400, "prompt"),
    (
        "prompt + max_tokens over context",
        {**GOOD, "prompt": "word " * 100, "max_tokens": 500},
        400,
        "max_tokens",
    ),
]


@pytest.mark.parametrize(
    ("name", "payload", "status", "param"), BAD_COMPLETIONS, ids=[c[0] for c in BAD_COMPLETIONS]
)
def test_bad_completion_is_an_openai_4xx_and_serving_goes_on(
    make_gateway: GatewayFactory, name: str, payload: Any, status: int, param: str | None
) -> None:
    client, chain = make_gateway(max_prompt_tokens=256, max_output_tokens=256)
    kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    assert_openai_error(client.post("/v1/completions", **kwargs), status, param)
    assert chain.steps == 0  # rejected before anything reached the chain
    assert client.post("/v1/completions", json=GOOD).status_code == 200


BAD_CHATS: list[tuple[str, Any, int, str | None]] = [
    ("no messages", {"model": MODEL, "messages": []}, 400, "messages"),
    ("bad role", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
    (
        "image part",
        {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        400,
        "messages",
    ),
    (
        "tools",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
        400,
        "tools",
    ),
    (
        "negative max_completion_tokens",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -1},
        400,
        "max_completion_tokens",
    ),
]


@pytest.mark.parametrize(("name", "payload", "status", "param"), BAD_CHATS, ids=[c[0] for c in BAD_CHATS])
def test_bad_chat_is_an_openai_4xx(
    make_gateway: GatewayFactory, name: str, payload: Any, status: int, param: str | None
) -> None:
    client, _ = make_gateway()
    assert_openai_error(client.post("/v1/chat/completions", json=payload), status, param)


def test_unknown_path_and_method_are_openai_shaped(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    assert_openai_error(client.get("/v1/nothing"), 404)
    assert_openai_error(client.get("/v1/completions"), 405)


def test_streaming_request_rejected_before_the_stream_gets_a_status(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    assert_openai_error(client.post("/v1/completions", json={**GOOD, "stream": True, "max_tokens": -1}), 400)


def test_node_loss_before_first_token_is_503(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, chain = make_gateway(chain=FakeChain(vocab=codec.vocab_size, fail_after=0))
    err = assert_openai_error(client.post("/v1/completions", json=GOOD), 503)
    assert err["code"] == "node_unavailable"
    assert chain.caches == {}  # the session was ended on the nodes


def test_node_loss_mid_stream_sends_error_event_then_done(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    client, chain = make_gateway(chain=FakeChain(vocab=codec.vocab_size, fail_after=3))
    resp = client.post("/v1/completions", json={**GOOD, "max_tokens": 10, "stream": True})
    assert resp.status_code == 200
    blocks = resp.text.strip("\n").split("\n\n")
    assert blocks[-1] == "data: [DONE]"
    assert '"error"' in blocks[-2] and "node_unavailable" in blocks[-2]
    assert chain.caches == {}


def test_lost_cache_is_rebuilt_from_history(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, chain = make_gateway(chain=FakeChain(vocab=codec.vocab_size, lose_cache_after=4))
    resp = client.post("/v1/completions", json={**GOOD, "max_tokens": 10})
    ids = codec.tokenizer("Hello")["input_ids"]
    assert resp.json()["choices"][0]["text"] == codec.decode(reference_ids(ids, 10, codec.vocab_size))
    assert len(chain.ended) == 2 and chain.caches == {}
    metrics = client.get("/metrics").text
    assert "edgesplit_reprefills_total 1.0" in metrics


def test_request_timeout_is_504(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    chain = FakeChain(vocab=codec.vocab_size, step_delay_s=0.2)
    client, _ = make_gateway(chain=chain, request_timeout_s=0.5)
    err = assert_openai_error(client.post("/v1/completions", json={**GOOD, "max_tokens": 50}), 504)
    assert err["type"] == "timeout_error"
    assert chain.caches == {}


def test_no_plan_means_503_and_unhealthy(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway(commit=False)
    assert_openai_error(client.get("/health"), 503)
    assert_openai_error(client.post("/v1/completions", json=GOOD), 503)


def test_privacy_high_refuses_a_route_leaking_privacy_blocks(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    from edgesplit.gateway.routes import CommittedPlan, route_from_segments

    b = codec.num_blocks
    leaky = CommittedPlan(route_from_segments(1, [("device", "a", 0, 1), ("cloud", "c", 1, b)]))
    client, _ = make_gateway(plan=leaky)
    err = assert_openai_error(client.post("/v1/completions", json=GOOD), 503)
    assert "cloud" in err["message"]
    assert client.post("/v1/completions", json={**GOOD, "privacy": "none"}).status_code == 200


def test_plan_commits_move_forward_only(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    b = codec.num_blocks
    seg = [{"node": "device", "start": 0, "end": 2}, {"node": "mec1", "start": 2, "end": b}]
    assert client.put("/v1/plan", json={"epoch": 2, "segments": seg}).status_code == 200
    assert client.get("/v1/plan").json()["epoch"] == 2
    assert_openai_error(client.put("/v1/plan", json={"epoch": 2, "segments": seg}), 409)
    gap = [{"node": "device", "start": 0, "end": 2}, {"node": "mec1", "start": 3, "end": b}]
    assert_openai_error(client.put("/v1/plan", json={"epoch": 3, "segments": gap}), 409)
    short = [{"node": "device", "start": 0, "end": 2}]
    assert_openai_error(client.put("/v1/plan", json={"epoch": 3, "segments": short}), 400)
    assert_openai_error(
        client.put("/v1/plan", json={"epoch": 3, "segments": [{"node": "x", "start": 0, "end": b}]}), 400
    )
    assert client.get("/v1/plan").json()["epoch"] == 2


def test_new_epoch_moves_running_sessions(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    """A plan committed between two requests' steps: later steps use it; the text is unchanged."""
    client, chain = make_gateway()
    b = codec.num_blocks
    first = client.post("/v1/completions", json={**GOOD, "max_tokens": 4}).json()["choices"][0]["text"]
    client.put("/v1/plan", json={"epoch": 5, "segments": [{"node": "device", "start": 0, "end": b}]})
    second = client.post("/v1/completions", json={**GOOD, "max_tokens": 4}).json()["choices"][0]["text"]
    assert first == second
    assert chain.epochs_seen[-1] == 5 and chain.epochs_seen[0] == 1


def test_every_edgesplit_error_has_an_explicit_mapping() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.EdgesplitError)
    ]
    assert set(classes) <= set(ERROR_TABLE), set(classes) - set(ERROR_TABLE)
    for cls in classes:
        status = to_api_error(cls("x")).status
        assert 400 <= status < 600


def test_user_errors_are_4xx_and_service_errors_5xx() -> None:
    assert to_api_error(errors.UserInputError("x")).status == 400
    assert to_api_error(errors.NodeUnavailableError("x")).status == 503
    assert to_api_error(RuntimeError("secret internals")).body()["error"]["message"] == (
        "internal error while serving the request"
    )


def test_client_disconnect_mid_stream_ends_the_session(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    """A client that goes away mid-stream: the body iterator is closed, the session ends on the nodes."""
    client, chain = make_gateway(chain=FakeChain(vocab=codec.vocab_size, step_delay_s=0.01))
    service = client.app.state.service  # type: ignore[attr-defined]

    async def main() -> None:
        payload = json.dumps({**GOOD, "max_tokens": 50, "stream": True}).encode()
        response = await service.completion(payload)
        body = response.body_iterator
        first = await anext(body)
        assert "text_completion" in first
        await body.aclose()  # what Starlette does when the client disconnects
        await service.decoder.drain()

    asyncio.run(main())
    assert chain.caches == {}
    assert chain.steps < 50
    assert service.running == 0


def test_create_app_with_a_starting_route(model_dir: Any, codec: TextCodec) -> None:
    from fastapi.testclient import TestClient

    from edgesplit.gateway.app import create_app
    from edgesplit.gateway.config import GatewayConfig
    from edgesplit.transport.base import Hop, Route

    chain = FakeChain(vocab=codec.vocab_size)
    route = Route(1, (Hop("device", "inproc", 0, codec.num_blocks or 6),))
    config = GatewayConfig(model_name=MODEL, model_path=model_dir)
    with TestClient(create_app(config, chain, route=route)) as http:
        assert http.get("/health").json() == {"status": "ok", "epoch": 1}
        assert http.post("/v1/completions", json=GOOD).status_code == 200


def test_event_followers_wake_on_new_events_and_get_keepalives() -> None:
    from edgesplit.gateway.events import EventLog

    async def main() -> list[str]:
        log = EventLog()
        await log.add({"kind": "a"})
        stream = log.follow(after=0, follow=True, heartbeat_s=0.2)
        got = [await anext(stream)]
        got.append(await anext(stream))  # nothing new: a keep-alive comment after the heartbeat
        waiter = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await log.add({"kind": "b"})
        got.append(await asyncio.wait_for(waiter, 2.0))
        await stream.aclose()
        return got

    first, keepalive, second = asyncio.run(main())
    assert '"kind":"a"' in first and keepalive == ": keep-alive\n\n" and '"kind":"b"' in second


def test_client_gone_before_the_stream_began_still_ends_the_session(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    client, chain = make_gateway()
    service = client.app.state.service  # type: ignore[attr-defined]

    async def main() -> None:
        response = await service.completion(json.dumps({**GOOD, "stream": True}).encode())
        assert service.running == 1 and chain.caches  # the prefill ran: a session is open
        await response.background()  # what Starlette runs after the response, sent or not
        await service.decoder.drain()

    asyncio.run(main())
    assert chain.caches == {} and service.running == 0


def test_api_keys_guard_v1_but_not_health_or_metrics(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway(api_keys=["sk-edge"])
    err = assert_openai_error(client.get("/v1/models"), 401)
    assert err["type"] == "authentication_error"
    assert_openai_error(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/v1/models", headers={"Authorization": "Bearer sk-edge"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200
    import openai

    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="sk-edge", max_retries=0, http_client=client)
    assert oai.completions.create(model=MODEL, prompt="Hi", max_tokens=2).usage.completion_tokens == 2  # type: ignore[union-attr]


def test_plan_writes_need_the_admin_token_or_a_loopback_peer(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    plan = {"epoch": 7, "segments": [{"node": "device", "start": 0, "end": codec.num_blocks}]}
    client, _ = make_gateway(admin_token="s3cret")
    assert_openai_error(client.put("/v1/plan", json=plan), 403)
    assert client.put("/v1/plan", json=plan, headers={"Authorization": "Bearer s3cret"}).status_code == 200

    open_client, _ = make_gateway()  # no token: loopback peers only

    async def remote_put() -> int:
        transport = httpx.ASGITransport(app=open_client.app, client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return (await http.put("/v1/plan", json=plan)).status_code

    assert asyncio.run(remote_put()) == 403
    assert open_client.put("/v1/plan", json=plan).status_code == 200
