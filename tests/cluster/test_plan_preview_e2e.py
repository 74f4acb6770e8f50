"""Plan preview on a local cluster: served by the orchestrator, proxied by the gateway, nothing deployed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback_up import running_cluster

from edgesplit.cluster.launcher import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    with running_cluster(EXAMPLE, ["--interval", "0.3"]) as lc:
        yield lc


def test_preview_through_the_gateway_plans_without_deploying(local: LocalCluster) -> None:
    assert local.orchestrator_url.startswith("http://127.0.0.1:")
    health = httpx.get(f"{local.orchestrator_url}/healthz", timeout=10).json()
    assert health == {"status": "ok", "epoch": 1}
    before = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
    resp = httpx.get(f"{local.gateway_url}/v1/plan/preview", params={"solver": "exact"}, timeout=60)
    assert resp.status_code == 200, resp.text
    plan = resp.json()
    blocks = before["segments"][-1]["end"]
    assert [b for s in plan["segments"] for b in range(s["start"], s["end"])] == list(range(blocks))
    assert sorted(plan["nodes_considered"]) == ["cloud", "device", "mec1"]
    # privacy "high" by default: embedding, layer 0 and head never on the untrusted cloud node
    assert all(plan["assignment"][b] != "cloud" for b in (0, 1, blocks - 1))
    direct = httpx.get(f"{local.orchestrator_url}/v1/plan/preview", params={"privacy": "none"}, timeout=60)
    assert direct.status_code == 200 and direct.json()["privacy"] == "none"
    after = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
    assert after["epoch"] == before["epoch"] == 1
