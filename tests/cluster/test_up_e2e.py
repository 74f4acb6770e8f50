"""`edgesplit up` on the 3-node example, driven by the official openai client (real processes).

One cluster serves the whole module (start-up dominates on a 2-core machine); the last test kills a
node and checks that `up` then stops everything, leaving no process and no port behind.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from loopback_up import LoopbackUp, kill_pids, pid_alive, port_free

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
MODEL = "builtin:llama-tiny"


@pytest.fixture(scope="module")
def up() -> Iterator[LoopbackUp]:
    cluster = LoopbackUp(EXAMPLE)
    pids: list[int] = []
    try:
        cluster.start()
        info = cluster.cluster()
        pids = [n["pid"] for n in info["nodes"]] + [info["gateway_pid"]]
        yield cluster
    finally:
        cluster.stop()
        kill_pids([p for p in pids if pid_alive(p)])


@pytest.fixture(scope="module")
def oai(up: LoopbackUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{up.url}/v1", api_key="dummy", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def reference() -> object:
    """Greedy generation in this process with the model core (monolithic chain), for many prompts."""
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model, load_tokenizer

    path = resolve_model(MODEL)
    model = load_block_model(path)
    tokenizer = load_tokenizer(path)
    eos = model.model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])

    def greedy_text(prompt: str, n: int) -> str:
        chain = SegmentChain.from_block_model(model, [(0, model.num_blocks)])
        ids = chain.generate(tokenizer(prompt)["input_ids"], n, eos_token_ids=eos_ids)
        if ids and ids[-1] in eos_ids:
            ids = ids[:-1]  # an OpenAI server stops at EOS without printing it
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    return greedy_text


def test_up_printed_plan_and_every_node_serves(up: LoopbackUp) -> None:
    info = up.cluster()
    assert [n["id"] for n in info["nodes"]] == ["device", "mec1", "cloud"]
    assert all(n["alive"] and n["reachable"] for n in info["nodes"])
    plan = httpx.get(f"{up.url}/v1/plan").json()
    assert plan["epoch"] == 1
    trusted = {"device", "mec1"}
    for seg in plan["segments"]:  # embedding, layer 0 and head (blocks 0, 1, 5) stay trusted
        if any(seg["start"] <= b < seg["end"] for b in (0, 1, 5)):
            assert seg["node"] in trusted
    assert "plan epoch 1" in up.text()


def test_openai_client_matches_edgesplit_generate(up: LoopbackUp, oai: openai.OpenAI) -> None:
    prompt, n = "The quick brown fox", 12
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgesplit.cli.main",
            "generate",
            "--model",
            MODEL,
            "--prompt",
            prompt,
            "--max-tokens",
            str(n),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    generated = json.loads(out.stdout)
    from edgesplit.model.builtin import resolve_model
    from edgesplit.model.loader import load_tokenizer

    tokenizer = load_tokenizer(resolve_model(MODEL))
    ids = generated["token_ids"]
    eos = tokenizer.eos_token_id
    expected = tokenizer.decode([t for t in ids if t != eos], skip_special_tokens=True)
    if not set(ids) & set(tokenizer.all_special_ids):
        assert expected == generated["text"]  # same decoding when no special token was generated

    done = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=n, temperature=0)
    assert done.choices[0].text == expected
    stream = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=n, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == expected

    chat = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=6, temperature=0
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens <= 6
    assert isinstance(chat.choices[0].message.content, str)


def test_eight_concurrent_streams_get_the_right_text(up: LoopbackUp, reference: object) -> None:
    prompts = [f"Request {i}: once upon a time" for i in range(8)]
    n = 10

    async def one(client: openai.AsyncOpenAI, prompt: str) -> str:
        stream = await client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=n, temperature=0, stream=True
        )
        return "".join([chunk.choices[0].text async for chunk in stream])

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{up.url}/v1", api_key="dummy", max_retries=0, timeout=60)
        try:
            return await asyncio.gather(*(one(client, p) for p in prompts))
        finally:
            await client.close()

    texts = asyncio.run(main())
    assert texts == [reference(p, n) for p in prompts]  # type: ignore[operator]


def test_bad_input_is_openai_4xx_and_serving_goes_on(up: LoopbackUp, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model=MODEL, prompt="x", max_tokens=-1)
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model=MODEL, prompt="x", max_tokens=10**7)
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model=MODEL, prompt="word " * 600, max_tokens=2)
    bad = httpx.post(
        f"{up.url}/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}
    assert (
        oai.completions.create(model=MODEL, prompt="still here?", max_tokens=3).usage.completion_tokens == 3
    )  # type: ignore[union-attr]


@pytest.mark.timeout(420)  # 220 requests over emulated links on a shared 2-core machine
def test_node_memory_does_not_grow_over_200_requests(up: LoopbackUp) -> None:
    info = up.cluster()
    procs = {n["id"]: psutil.Process(n["pid"]) for n in info["nodes"]}
    payload = {"model": MODEL, "max_tokens": 2, "temperature": 0}  # a prefill and a decode step each
    with httpx.Client(base_url=up.url, timeout=30) as http:
        for i in range(20):  # warm-up: allocator pools, first-use caches
            assert http.post("/v1/completions", json={**payload, "prompt": f"warm {i}"}).status_code == 200
        before = {k: p.memory_info().rss for k, p in procs.items()}
        started = time.monotonic()
        for i in range(200):
            resp = http.post("/v1/completions", json={**payload, "prompt": f"request number {i} of many"})
            assert resp.status_code == 200
        took = time.monotonic() - started
    after = {k: p.memory_info().rss for k, p in procs.items()}
    growth = {k: after[k] - before[k] for k in procs}
    # 200 leaked sessions of this model would hold ~200 x 10 tokens x 512 B x 4 layers plus tensors and
    # Python objects per session; allow 8 MiB of allocator noise per node.
    assert all(g < 8 * 2**20 for g in growth.values()), (growth, took)
    sessions = {n["id"]: n["active_sessions"] for n in up.cluster()["nodes"]}
    assert sessions == {"device": 0, "mec1": 0, "cloud": 0}


def test_zz_a_dead_node_stops_the_whole_cluster_cleanly(up: LoopbackUp) -> None:
    """Runs last: kill one node by PID; `up` must stop everything, free every port, and exit 1."""
    info = up.cluster()
    pids = [n["pid"] for n in info["nodes"]] + [info["gateway_pid"]]
    addresses = [n["address"] for n in info["nodes"]] + [up.url.removeprefix("http://")]
    victim = next(n for n in info["nodes"] if n["id"] == "mec1")
    psutil.Process(victim["pid"]).kill()
    assert up.proc is not None
    code = up.proc.wait(timeout=40)
    assert code == 1
    assert "mec1 exited" in up.text()
    assert [p for p in pids if pid_alive(p)] == []
    assert all(port_free(a) for a in addresses)
