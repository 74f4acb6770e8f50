"""Many requests at once, the official openai client in-process, and the stop-aware text stream."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
from gateway_factories import MODEL, GatewayFactory
from gateway_fakes import FakeChain, reference_ids
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.gateway.text import TextCodec, TextStream


def test_eight_concurrent_streams_each_get_their_own_text(
    make_gateway: GatewayFactory, codec: TextCodec
) -> None:
    client, chain = make_gateway(chain=FakeChain(vocab=codec.vocab_size, step_delay_s=0.002))
    prompts = [f"Request number {i} says hello" for i in range(8)]

    async def one(http: httpx.AsyncClient, prompt: str) -> str:
        text = ""
        payload = {"model": MODEL, "prompt": prompt, "max_tokens": 12, "stream": True}
        async with http.stream("POST", "/v1/completions", json=payload) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
        return text

    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return await asyncio.gather(*(one(http, p) for p in prompts))

    texts = asyncio.run(main())
    for prompt, text in zip(prompts, texts, strict=True):
        ids = codec.tokenizer(prompt)["input_ids"]
        assert text == codec.decode(reference_ids(ids, 12, codec.vocab_size))
    assert chain.caches == {}


def test_concurrency_limit_answers_503(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway(
        chain=FakeChain(vocab=codec.vocab_size, step_delay_s=0.05), max_concurrent_requests=1
    )

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            payload = {"model": MODEL, "prompt": "hi", "max_tokens": 5}
            resps = await asyncio.gather(*(http.post("/v1/completions", json=payload) for _ in range(3)))
            return sorted(r.status_code for r in resps)

    assert asyncio.run(main()) == [200, 503, 503]


def test_official_openai_client_in_process(make_gateway: GatewayFactory, codec: TextCodec) -> None:
    client, _ = make_gateway()
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="dummy", max_retries=0, http_client=client)
    ids = codec.tokenizer("Hello")["input_ids"]
    expected = codec.decode(reference_ids(ids, 6, codec.vocab_size))
    done = oai.completions.create(model=MODEL, prompt="Hello", max_tokens=6, temperature=0)
    assert done.choices[0].text == expected
    stream = oai.completions.create(model=MODEL, prompt="Hello", max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == expected
    chat = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert chat.choices[0].message.role == "assistant" and chat.usage and chat.usage.completion_tokens == 3
    try:
        oai.completions.create(model="nope", prompt="x", max_tokens=2)
        raise AssertionError("expected NotFoundError")
    except openai.NotFoundError as exc:
        assert exc.body and exc.body["param"] == "model"  # type: ignore[index]


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=3, max_value=511), min_size=1, max_size=24),
    stop=st.lists(st.text(min_size=1, max_size=3), max_size=2),
)
def test_text_stream_deltas_equal_decode_cut_at_first_stop(
    codec: TextCodec, ids: list[int], stop: list[str]
) -> None:
    stream = TextStream(codec, tuple(stop))
    pieces = []
    for token in ids:
        pieces.append(stream.push(token))
        if stream.stopped:
            break
    pieces.append(stream.finish())
    full = codec.decode(ids)
    hits = [full.find(s) for s in stop if s in full]
    expected = full[: min(hits)] if hits else full
    assert "".join(pieces) == expected
