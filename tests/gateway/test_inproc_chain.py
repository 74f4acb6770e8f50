"""The gateway over the real in-process client and the real model: same text as monolithic greedy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from gateway_factories import MODEL, NODES

from edgesplit.gateway.app import create_app
from edgesplit.gateway.config import GatewayConfig
from edgesplit.gateway.routes import CommittedPlan, RouteBook, route_from_segments
from edgesplit.gateway.text import TextCodec

SEGMENTS = [("device", 0, 2), ("mec1", 2, 4), ("device", 4, 6)]


@pytest.fixture(scope="module")
def block_model(model_dir: Path) -> Any:
    from edgesplit.model.loader import load_block_model

    return load_block_model(model_dir)


@pytest.fixture
def served(model_dir: Path, codec: TextCodec, block_model: Any) -> Iterator[tuple[TestClient, Any]]:
    from edgesplit.model.segment import SegmentRunner
    from edgesplit.transport.inproc import InprocSegmentClient

    client = InprocSegmentClient({(s, e): SegmentRunner(block_model, s, e) for _, s, e in SEGMENTS})
    routes = RouteBook(frozenset({"device", "mec1"}), frozenset({0, 1, 5}))
    routes.commit(CommittedPlan(route_from_segments(1, [(n, "inproc", s, e) for n, s, e in SEGMENTS])))
    config = GatewayConfig(model_name=MODEL, model_path=model_dir, nodes=NODES, privacy_blocks=[0, 1, 5])
    with TestClient(create_app(config, client, codec=codec, routes=routes)) as http:
        yield http, client


def greedy(block_model: Any, codec: TextCodec, prompt_ids: list[int], n: int) -> str:
    """Monolithic greedy generation with the model core; EOS ends the text without being printed."""
    from edgesplit.model.chain import SegmentChain

    chain = SegmentChain.from_block_model(block_model, [(0, block_model.num_blocks)])
    ids = chain.generate(prompt_ids, n, eos_token_ids=codec.eos_token_ids, session_id="reference")
    return codec.decode([t for t in ids if t not in codec.eos_token_ids])


def test_completion_equals_monolithic_greedy(
    served: tuple[TestClient, Any], codec: TextCodec, block_model: Any
) -> None:
    http, client = served
    for prompt in ("Hello, world!", "The orchestrator moves the cut"):
        body = http.post(
            "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0}
        )
        assert body.status_code == 200
        assert body.json()["choices"][0]["text"] == greedy(
            block_model, codec, codec.encode_prompt(prompt), 12
        )
    assert client.held_sessions() == 0  # every session was ended on every segment


def test_concurrent_streams_over_batched_segments(
    served: tuple[TestClient, Any], codec: TextCodec, block_model: Any
) -> None:
    http, client = served
    prompts = [f"Story {i} begins" for i in range(6)]

    async def one(ac: httpx.AsyncClient, prompt: str) -> str:
        payload = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": True}
        resp = await ac.post("/v1/completions", json=payload)
        chunks = [line[6:] for line in resp.text.split("\n") if line.startswith("data: {")]
        return "".join(json.loads(c)["choices"][0]["text"] for c in chunks)

    async def main() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=http.app), base_url="http://gw") as ac:
            texts = await asyncio.gather(*(one(ac, p) for p in prompts))
        # Sessions end after the last chunk is sent: wait for that (bounded) before this loop closes.
        deadline = asyncio.get_running_loop().time() + 30.0
        while client.held_sessions() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return list(texts)

    texts = asyncio.run(main())
    assert texts == [greedy(block_model, codec, codec.encode_prompt(p), 8) for p in prompts]
    assert client.held_sessions() == 0


def test_chat_template_prompt_over_the_real_chain(
    served: tuple[TestClient, Any], codec: TextCodec, block_model: Any
) -> None:
    http, _ = served
    messages = [{"role": "user", "content": "Where is the cut?"}]
    body = http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 5, "temperature": 0}
    ).json()
    rendered = codec.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = codec.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert body["choices"][0]["message"]["content"] == greedy(block_model, codec, ids, 5)
