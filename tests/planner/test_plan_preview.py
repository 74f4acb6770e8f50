"""The orchestrator's HTTP API: GET /v1/plan/preview plans without deploying; /healthz; mounted routers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient

from edgesplit.orchestrator.http_api import create_app

EXAMPLE = json.loads(
    (Path(__file__).parents[2] / "examples" / "problems" / "device_mec_cloud.json").read_text()
)
PRIVATE_BLOCKS = [b for b, block in enumerate(EXAMPLE["blocks"]) if block["privacy"]]


class Source:
    """A problem source that records which privacy modes it was asked for."""

    def __init__(self, problem: Mapping[str, Any]) -> None:
        self.problem = dict(problem)
        self.asked: list[str | None] = []

    def __call__(self, privacy: str | None) -> Mapping[str, Any]:
        self.asked.append(privacy)
        return {**self.problem, "privacy": privacy or self.problem.get("privacy", "high")}


def test_preview_plans_the_current_problem_without_side_effects() -> None:
    source = Source(EXAMPLE)
    client = TestClient(create_app(source))
    resp = client.get("/v1/plan/preview", params={"solver": "exact"})
    assert resp.status_code == 200, resp.text
    plan = resp.json()
    assert plan["preview"] is True and plan["solver"] == "exact" and plan["optimal"] is True
    assert {"assignment", "segments", "cost", "optimal", "solver", "solve_ms"} <= plan.keys()
    assert [b for s in plan["segments"] for b in range(s["start"], s["end"])] == list(
        range(len(EXAMPLE["blocks"]))
    )
    # privacy "high" (the problem's default): every privacy-critical block on the only trusted node
    assert all(plan["assignment"][b] == "device" for b in PRIVATE_BLOCKS)
    assert plan["nodes_considered"] == ["device", "mec1", "cloud"]
    assert source.asked == [None]


def test_preview_passes_privacy_and_objective() -> None:
    source = Source(EXAMPLE)
    client = TestClient(create_app(source))
    resp = client.get("/v1/plan/preview", params={"privacy": "none", "objective": "throughput"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["privacy"] == "none" and resp.json()["objective"] == "throughput"
    assert source.asked == ["none"]


def test_preview_rejects_bad_queries_openai_shaped() -> None:
    client = TestClient(create_app(Source(EXAMPLE)))
    for params, field in (
        ({"solver": "magic"}, "solver"),
        ({"objective": "cheap"}, "objective"),
        ({"privacy": "maybe"}, "privacy"),
    ):
        resp = client.get("/v1/plan/preview", params=params)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == field
        assert params[field] in error["message"]


def test_preview_of_an_infeasible_environment_is_503_not_a_plan() -> None:
    tiny = {**EXAMPLE, "nodes": [{**n, "mem_bytes": 1000} for n in EXAMPLE["nodes"]]}
    resp = TestClient(create_app(Source(tiny))).get("/v1/plan/preview")
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "infeasible"
    assert "assignment" not in resp.json()


def test_healthz_and_extra_routers_are_served() -> None:
    router = APIRouter()

    @router.get("/v1/shards/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    client = TestClient(create_app(Source(EXAMPLE), extra_routers=[router], status=lambda: {"epoch": 3}))
    assert client.get("/healthz").json() == {"status": "ok", "epoch": 3}
    assert client.get("/v1/shards/ping").json() == {"pong": "yes"}
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
