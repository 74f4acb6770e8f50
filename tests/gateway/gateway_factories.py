"""Shared values and worlds for gateway tests: the served model id, the nodes, a 3-hop plan, a gateway
over a fake chain (``fake_gateway_app``) and any app under a real uvicorn server (``ThreadedGateway``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_fakes import FakeChain

from edgesplit.gateway.app import create_app
from edgesplit.gateway.config import GatewayConfig, GatewayNodeConfig
from edgesplit.gateway.routes import CommittedPlan, RouteBook, route_from_segments
from edgesplit.gateway.text import TextCodec
from edgesplit.transport.base import SegmentClient

MODEL = "builtin:llama-tiny"

NODES = [
    GatewayNodeConfig(id="device", address="127.0.0.1:1", trusted=True, source=True),
    GatewayNodeConfig(id="mec1", address="127.0.0.1:2", trusted=True),
    GatewayNodeConfig(id="cloud", address="127.0.0.1:3", trusted=False),
]


def three_hop_plan(epoch: int = 1, num_blocks: int = 6) -> CommittedPlan:
    """device 0:2 → mec1 2:5 → device 5:B: privacy blocks (0, 1, head) stay trusted."""
    return CommittedPlan(
        route_from_segments(
            epoch,
            [
                ("device", "127.0.0.1:1", 0, 2),
                ("mec1", "127.0.0.1:2", 2, num_blocks - 1),
                ("device", "127.0.0.1:1", num_blocks - 1, num_blocks),
            ],
        )
    )


def fake_gateway_app(
    chain: SegmentClient,
    model_dir: Path,
    codec: TextCodec,
    plan: CommittedPlan | None = None,
    commit: bool = True,
    **config: Any,
) -> FastAPI:
    """The gateway on device/mec1/cloud over ``chain``; ``plan`` (default: the 3-hop plan) committed."""
    cfg = GatewayConfig(
        model_name=MODEL,
        model_path=model_dir,
        nodes=NODES,
        privacy_blocks=[0, 1, codec.num_blocks - 1],
        source_node="device",
        **config,
    )
    routes = RouteBook(frozenset({"device", "mec1"}), frozenset(cfg.privacy_blocks))
    if commit:
        routes.commit(plan or three_hop_plan(num_blocks=codec.num_blocks))
    return create_app(cfg, chain, codec=codec, routes=routes)


def assert_openai_error(resp: Any, status: int, param: str | None = None) -> dict[str, Any]:
    """``resp`` has ``status`` and an OpenAI error body (``param`` when given); returns the error."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


class ThreadedGateway:
    """``app`` under a real uvicorn server on a runtime loopback port, in a thread; stopped on exit."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        assert not self.thread.is_alive(), "gateway did not stop"


GatewayFactory = Callable[..., tuple[TestClient, FakeChain]]
