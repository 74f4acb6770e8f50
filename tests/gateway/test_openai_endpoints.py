"""The OpenAI-compatible endpoints over a fake chain: bodies, SSE framing, usage, finish reasons."""

from __future__ import annotations

import json
from typing import Any

from gateway_factories import MODEL, GatewayFactory
from gateway_fakes import FakeChain, reference_ids

from edgesplit.gateway.text import ChatTurn, TextCodec


def sse_events(body: str) -> list[Any]:
    """Parse an SSE body strictly: only `data: …` events separated by blank lines."""
    assert body.endswith("\n\n")
    events: list[Any] = []
    for block in body.strip("\n").split("\n\n"):
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_completion_text_is_the_chain_greedy_tokens(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    prompt = "The quick brown fox"
    resp = client.post(
        "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 7, "temperature": 0}
    )
    assert resp.status_code == 200
    body = resp.json()
    expected = codec.decode(reference_ids(codec.tokenizer(prompt)["input_ids"], 7, codec.vocab_size))
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == expected
    assert body["choices"][0]["finish_reason"] == "length"
    n_prompt = len(codec.tokenizer(prompt)["input_ids"])
    assert body["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 7, "total_tokens": n_prompt + 7}


def test_token_id_prompt_and_echo(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    ids = [1, 50, 60, 70]
    resp = client.post("/v1/completions", json={"model": MODEL, "prompt": ids, "max_tokens": 3, "echo": True})
    assert resp.status_code == 200
    text = resp.json()["choices"][0]["text"]
    assert text == codec.decode(ids) + codec.decode(reference_ids(ids, 3, codec.vocab_size))


def test_chat_uses_the_checkpoint_chat_template(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    resp = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 5})
    assert resp.status_code == 200
    body = resp.json()
    rendered = codec.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = codec.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert codec.encode_chat([ChatTurn(m["role"], m["content"]) for m in messages]) == prompt_ids
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": codec.decode(reference_ids(prompt_ids, 5, codec.vocab_size)),
    }
    assert body["usage"]["prompt_tokens"] == len(prompt_ids)


def test_streamed_completion_framing_and_usage(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    prompt = "Once upon a time"
    resp = client.post(
        "/v1/completions",
        json={
            "model": MODEL,
            "prompt": prompt,
            "max_tokens": 9,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "text_completion" for c in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 9
    content = chunks[:-1]
    assert all(c["usage"] is None for c in content)
    assert [c["choices"][0]["finish_reason"] for c in content][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in content[:-1])
    ids = codec.tokenizer(prompt)["input_ids"]
    assert "".join(c["choices"][0]["text"] for c in content) == codec.decode(
        reference_ids(ids, 9, codec.vocab_size)
    )


def test_streamed_chat_starts_with_role_and_has_no_usage_unless_asked(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    resp = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "stream": True,
        },
    )
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_eos_stops_with_finish_reason_stop(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    chain = FakeChain(vocab=codec.vocab_size, eos_id=min(codec.eos_token_ids), eos_after=4)
    client, _ = make_gateway(chain=chain)
    resp = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 20})
    body = resp.json()
    ids = codec.tokenizer("Hello")["input_ids"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == codec.decode(reference_ids(ids, 3, codec.vocab_size))
    assert body["usage"]["completion_tokens"] == 4  # the EOS counts as generated, like vLLM


def test_stop_string_cuts_text_and_ends_session(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, chain = make_gateway()
    ids = codec.tokenizer("Hello")["input_ids"]
    full = codec.decode(reference_ids(ids, 30, codec.vocab_size))
    stop = full[10:13]
    cut = full[: full.index(stop)]
    for stream in (False, True):
        resp = client.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "Hello", "max_tokens": 30, "stop": [stop], "stream": stream},
        )
        if stream:
            chunks = sse_events(resp.text)[:-1]
            text = "".join(c["choices"][0]["text"] for c in chunks)
            finish = chunks[-1]["choices"][0]["finish_reason"]
        else:
            text, finish = resp.json()["choices"][0]["text"], resp.json()["choices"][0]["finish_reason"]
        assert (text, finish) == (cut, "stop")
    assert chain.caches == {}


def test_models_lists_the_served_model(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0]["object"] == "model"


def test_response_reports_where_the_request_ran(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    last_block = codec.num_blocks - 1
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2}).json()
    assert body["edgesplit"] == {
        "epochs": [1],
        "nodes": ["device", "mec1"],
        "chains": {
            "1": [
                {"node": "device", "start": 0, "end": 2},
                {"node": "mec1", "start": 2, "end": last_block},
                {"node": "device", "start": last_block, "end": last_block + 1},
            ]
        },
        "reprefills": 0,
        "privacy": "high",
        "privacy_violation": False,
    }
    resp = client.post(
        "/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2, "stream": True}
    )
    last = sse_events(resp.text)[-2]
    assert last["choices"][0]["finish_reason"] == "length" and last["edgesplit"]["epochs"] == [1]
    assert last["edgesplit"]["chains"] == body["edgesplit"]["chains"]
    metrics = client.get("/metrics").text
    assert "edgesplit_privacy_violations_total 0.0" in metrics
    assert 'edgesplit_request_success_total{finished_reason="length"} 2.0' in metrics
    assert "edgesplit_generation_tokens_total 4.0" in metrics
