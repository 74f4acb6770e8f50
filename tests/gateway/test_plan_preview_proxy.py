"""GET /v1/plan/preview on the gateway: 503 until an orchestrator announced itself, then proxied to it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_factories import GatewayFactory

from edgesplit.orchestrator.http_api import bind, create_app, serve, url_of

EXAMPLE = json.loads(
    (Path(__file__).parents[2] / "examples" / "problems" / "device_mec_cloud.json").read_text()
)


@pytest.fixture
def orchestrator_url() -> Iterator[str]:
    """A real orchestrator HTTP API on a loopback port of its choosing, planning the example problem."""
    sock = bind("127.0.0.1:0")
    app = create_app(lambda privacy: {**EXAMPLE, "privacy": privacy or "high"})
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(app, sock, stop),), daemon=True)
    thread.start()
    try:
        yield url_of(sock)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        assert not thread.is_alive()
        loop.close()


def _announce(client: Any, url: str, **headers: str) -> Any:
    return client.put("/v1/orchestrator", json={"url": url}, headers=headers)


def test_preview_is_503_until_the_orchestrator_announced_itself(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    resp = client.get("/v1/plan/preview")
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "unavailable_error"
    assert "orchestrator" in resp.json()["error"]["message"]


def test_preview_is_proxied_with_its_query(make_gateway: GatewayFactory, orchestrator_url: str) -> None:
    client, _ = make_gateway()
    assert _announce(client, orchestrator_url).status_code == 200
    resp = client.get("/v1/plan/preview", params={"solver": "exact", "privacy": "none"})
    assert resp.status_code == 200, resp.text
    plan = resp.json()
    assert plan["preview"] is True and plan["solver"] == "exact" and plan["privacy"] == "none"
    bad = client.get("/v1/plan/preview", params={"solver": "magic"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "solver"


def test_an_unreachable_orchestrator_is_503(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway()
    sock = bind("127.0.0.1:0")
    url = url_of(sock)
    sock.close()  # nobody listens there any more
    assert _announce(client, url).status_code == 200
    resp = client.get("/v1/plan/preview")
    assert resp.status_code == 503 and url in resp.json()["error"]["message"]


def test_announcing_needs_the_admin_token_and_a_url(make_gateway: GatewayFactory) -> None:
    client, _ = make_gateway(admin_token="s3cret")
    assert _announce(client, "http://127.0.0.1:9").status_code == 403
    ok = _announce(client, "http://127.0.0.1:9/", authorization="Bearer s3cret")
    assert ok.status_code == 200 and ok.json() == {"url": "http://127.0.0.1:9"}
    bad = client.put("/v1/orchestrator", json={"url": "ftp://x"}, headers={"authorization": "Bearer s3cret"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "url"
