"""Gateway API limits: body size (413), per-client rate (429 + Retry-After), body and request deadlines.

Every refusal must be an OpenAI-shaped error the official client understands, and must leave the
gateway serving normal requests.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from gateway_world import MODEL, FakeChain, gateway_app, served

from edgesplit.gateway.limits import RateLimiter

pytestmark = pytest.mark.timeout(120)

GOOD = {"model": MODEL, "prompt": "hello there", "max_tokens": 3}


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from edgesplit.model.builtin import resolve_model

    return resolve_model(MODEL)


def _openai_error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_an_oversized_body_is_refused_before_it_reaches_the_chain(model_dir: Path) -> None:
    chain = FakeChain()
    with TestClient(gateway_app(model_dir, chain, max_body_bytes=2000)) as client:
        big = {**GOOD, "prompt": "x" * 5000}
        error = _openai_error(client.post("/v1/completions", json=big), 413)
        assert error["code"] == "request_too_large" and "2000" in str(error["message"])
        # Without a Content-Length (chunked upload) the limit holds while reading.
        body = json.dumps(big).encode()
        chunks = (body[i : i + 512] for i in range(0, len(body), 512))
        resp = client.post(
            "/v1/chat/completions", content=chunks, headers={"content-type": "application/json"}
        )
        assert _openai_error(resp, 413)["code"] == "request_too_large"
        assert chain.steps == 0
        # Just under the limit is served, chunked or not.
        assert client.post("/v1/completions", json=GOOD).status_code == 200
        small = json.dumps(GOOD).encode()
        resp = client.post("/v1/completions", content=iter([small[:10], small[10:]]))
        assert resp.status_code == 200, resp.text
        assert chain.steps == 6


def test_rate_limit_is_per_key_with_retry_after(model_dir: Path) -> None:
    chain = FakeChain()
    app = gateway_app(model_dir, chain, api_keys=["alice", "bob"], rate_limit_rps=0.2, rate_limit_burst=2)
    with TestClient(app) as client:
        alice = {"authorization": "Bearer alice"}
        assert [client.post("/v1/completions", json=GOOD, headers=alice).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = client.post("/v1/completions", json=GOOD, headers=alice)
        error = _openai_error(limited, 429)
        assert error["code"] == "rate_limit_exceeded"
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 5  # one token refills in 1 / 0.2 = 5 s
        # Bob has his own bucket; admin and monitoring paths are never limited.
        assert (
            client.post("/v1/completions", json=GOOD, headers={"authorization": "Bearer bob"}).status_code
            == 200
        )
        assert all(client.get("/v1/models", headers=alice).status_code == 200 for _ in range(5))
        assert all(client.get("/health").status_code == 200 for _ in range(5))
        # Made-up keys share the caller's address bucket (and are refused anyway).
        statuses = [
            client.post("/v1/completions", json=GOOD, headers={"authorization": f"Bearer k{i}"}).status_code
            for i in range(4)
        ]
        assert statuses == [401, 401, 429, 429]


def test_the_official_client_sees_rate_limit_and_size_errors(model_dir: Path) -> None:
    app = gateway_app(model_dir, FakeChain(), rate_limit_rps=0.1, rate_limit_burst=1, max_body_bytes=4000)
    with served(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)
        first = client.completions.create(model=MODEL, prompt="hello", max_tokens=2)
        assert first.choices[0].text
        with pytest.raises(openai.RateLimitError) as limited:
            client.completions.create(model=MODEL, prompt="hello", max_tokens=2)
        assert limited.value.code == "rate_limit_exceeded"
        assert int(limited.value.response.headers["retry-after"]) >= 1
    app = gateway_app(model_dir, FakeChain(), max_body_bytes=4000)
    with served(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as too_big:
            client.completions.create(model=MODEL, prompt="y" * 10_000, max_tokens=2)
        assert too_big.value.status_code == 413 and too_big.value.code == "request_too_large"
        assert client.completions.create(model=MODEL, prompt="hello", max_tokens=2).choices[0].text


def test_a_body_that_never_finishes_gets_408_on_a_real_socket(model_dir: Path) -> None:
    app = gateway_app(model_dir, FakeChain(), body_timeout_s=0.5)
    with served(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"model": '
            )
            started = time.monotonic()
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
            waited = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b'"request_timeout"' in reply
        assert 0.4 <= waited < 8
        assert httpx.post(f"{url}/v1/completions", json=GOOD, timeout=30).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_the_request_timeout_ends_a_slow_generation_cleanly(model_dir: Path, stream: bool) -> None:
    chain = FakeChain(step_delay_s=0.2)
    with TestClient(gateway_app(model_dir, chain, request_timeout_s=0.7)) as client:
        started = time.monotonic()
        resp = client.post("/v1/completions", json={**GOOD, "max_tokens": 50, "stream": stream})
        elapsed = time.monotonic() - started
        if stream:
            assert resp.status_code == 200
            events = [ln.removeprefix("data: ") for ln in resp.text.splitlines() if ln.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["type"] == "timeout_error"
        else:
            assert _openai_error(resp, 504)["type"] == "timeout_error"
        assert 0.6 <= elapsed < 5
        assert chain.steps < 50
    # Every session the chain saw was ended (the app's shutdown drains the clean-ups).
    assert chain.started and chain.started <= chain.ended


def test_rate_limiter_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.acquire("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a", 0.0) == pytest.approx(0.5)
    assert limiter.acquire("a", 0.25) == pytest.approx(0.25)  # half a token refilled
    assert limiter.acquire("a", 0.5) == 0.0
    assert limiter.acquire("b", 0.5) == 0.0  # another client, a full bucket
    assert limiter.acquire("a", 100.0) == 0.0  # refills to the burst, not beyond
    assert [limiter.acquire("a", 100.0) for _ in range(3)][-1] > 0


def test_rate_limiter_forgets_the_least_recent_clients_beyond_its_cap() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_clients=2)
    assert limiter.acquire("a", 0.0) == 0.0 and limiter.acquire("a", 0.0) > 0
    limiter.acquire("b", 0.0)
    limiter.acquire("c", 0.0)  # evicts "a" (the least recently seen)
    assert limiter.acquire("a", 0.0) == 0.0
