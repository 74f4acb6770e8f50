"""A gateway over a fake chain, for API-level security tests (limits, fuzzing): no nodes needed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from edgesplit.gateway.app import create_app
from edgesplit.gateway.config import GatewayConfig, GatewayNodeConfig
from edgesplit.transport.base import ChainResult, ChainStep, Hop, Route

MODEL = "builtin:llama-tiny"  # 6 blocks, 512-token vocabulary
TOKENS = (101, 202, 303, 404)


@dataclass
class FakeChain:
    """Answers a fixed token cycle (never EOS); records sessions started and ended."""

    step_delay_s: float = 0.0
    steps: int = 0
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        self.started.add(step.session_id)
        if self.step_delay_s:
            await asyncio.sleep(self.step_delay_s)
        self.steps += 1
        return ChainResult(step.session_id, TOKENS[self.steps % len(TOKENS)])

    async def end_session(self, route: Route, session_id: str) -> None:
        self.ended.add(session_id)

    async def close(self) -> None:
        return None


def gateway_app(model_dir: Path, chain: FakeChain, **config: Any) -> FastAPI:
    """The real gateway app (real middleware, parsing, decoder) over ``chain`` on a trusted 1-hop plan."""
    cfg = GatewayConfig(
        model_name=MODEL,
        model_path=model_dir,
        nodes=[GatewayNodeConfig(id="device", address="127.0.0.1:1", trusted=True, source=True)],
        privacy_blocks=[0, 1, 5],
        **config,
    )
    return create_app(cfg, chain, route=Route(1, (Hop("device", "127.0.0.1:1", 0, 6),)))  # type: ignore[arg-type]


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port chosen now, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
