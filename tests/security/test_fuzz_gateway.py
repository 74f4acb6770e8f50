"""The gateway's HTTP API fuzzed from its own OpenAPI document with schemathesis (bounded cases).

Every answer must be either a success or an OpenAI-shaped error; a 5xx is allowed only as a clean,
OpenAI-shaped "unavailable" or "timeout" (never a 500 or a crash); each call finishes in bounded time;
afterwards a normal request is served. Positive (schema-valid) and negative (schema-violating) cases.

Not fuzzed: PUT /v1/orchestrator (admin-only; it points the gateway at a URL it then calls).
GET /v1/events is fuzzed with ``follow=false`` (with ``follow`` it is an endless stream by design).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_world import MODEL, FakeChain, gateway_app
from hypothesis import HealthCheck, settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CASES_PER_OPERATION = 25
CALL_LIMIT_S = 10.0
CLEAN_5XX = {503: {"unavailable_error", "privacy_unavailable_error"}, 504: {"timeout_error"}}
TRIED: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def fuzzed_app() -> FastAPI:
    from edgesplit.model.builtin import resolve_model

    return gateway_app(resolve_model(MODEL), FakeChain(), request_timeout_s=5.0, max_body_bytes=64 * 1024)


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=CASES_PER_OPERATION,
    )
    return schema


def _assert_clean(status: int, text: str, label: str) -> None:
    if status < 400:
        return
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) == {"error"}, f"{label}: not OpenAI-shaped: {text[:300]}"
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), f"{label}: {text[:300]}"
    assert isinstance(error["message"], str) and error["message"]
    if status >= 500:
        assert error["type"] in CLEAN_5XX.get(status, set()), f"{label}: server error {status}: {text[:300]}"


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/v1/orchestrator", method="PUT")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzzed_requests_get_clean_answers(case: schemathesis.Case) -> None:
    assert case.operation.label != "PUT /v1/orchestrator"
    if case.operation.label == "GET /v1/events":
        case.query = {**(case.query or {}), "follow": "false"}
    started = time.monotonic()
    response = case.call()
    elapsed = time.monotonic() - started
    TRIED[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    _assert_clean(response.status_code, response.text, case.operation.label)
    assert elapsed < CALL_LIMIT_S, f"{case.operation.label} took {elapsed:.1f} s"


def test_after_fuzzing_a_normal_request_is_served(fuzzed_app: FastAPI, tmp_path: Path) -> None:
    """Runs after the fuzz cases (file order); records how many were tried."""
    total = sum(TRIED.values())
    assert total >= CASES_PER_OPERATION, f"only {total} fuzz cases ran"
    with TestClient(fuzzed_app) as client:
        resp = client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["completion_tokens"] == 3
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    summary = {"cases": total, "per_operation": dict(TRIED), "statuses": dict(sorted(STATUSES.items()))}
    print("gateway fuzz:", json.dumps(summary))
