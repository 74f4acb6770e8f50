"""The data plane under mTLS, with a real model on an in-process node (127.0.0.1:0).

A recording TCP proxy relays the gateway's traffic to the first hop during a generation: with mTLS
the prompt's token-id bytes (int64 little-endian, as the Tensor message carries them) never appear
on the wire; with plain gRPC they do (the positive control). A node's trust for privacy-critical
blocks is its certificate's.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from dataplane_nodes import running_node

from edgesplit.errors import PrivacyViolationError
from edgesplit.node.config import NodeConfig
from edgesplit.security.pki import Role, init_ca, issue
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.tls import TlsConfig, TlsFilesConfig

pytestmark = pytest.mark.anyio
MODEL = "builtin:llama-tiny"  # 4 layers: blocks 0:6
N_BLOCKS = 6
PROMPT = (431, 77, 509, 262, 318, 145, 490, 203)
STEP_TIMEOUT_S = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    init_ca(tmp_path)
    issue(tmp_path, "n0", Role.NODE, trusted=True)
    issue(tmp_path, "n1", Role.NODE)
    issue(tmp_path, "gw", Role.GATEWAY)
    return tmp_path


class RecordingProxy:
    """Relays TCP connections to ``target`` and keeps every byte the client side sent."""

    def __init__(self, target: str) -> None:
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.sent = bytearray()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        for source, sink, record in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(source, sink, record))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while chunk := await source.read(65536):
                if record:
                    self.sent += chunk
                sink.write(chunk)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


async def _generate(client: GrpcSegmentClient, route: Route, session: str, n: int) -> list[int]:
    tokens = [(await client.run_step(route, ChainStep(session, PROMPT, 0), STEP_TIMEOUT_S)).token_id]
    for i in range(n - 1):
        step = ChainStep(session, (tokens[-1],), len(PROMPT) + i)
        tokens.append((await client.run_step(route, step, STEP_TIMEOUT_S)).token_id)
    return tokens


@pytest.mark.parametrize("secure", [True, False], ids=["mtls", "insecure"])
async def test_prompt_token_bytes_never_cross_the_wire_in_clear(pki: Path, secure: bool) -> None:
    files = TlsFilesConfig.in_dir(pki, "n0") if secure else None
    tls = TlsConfig.load(TlsFilesConfig.in_dir(pki, "gw")) if secure else None
    needle = b"".join(t.to_bytes(8, "little") for t in PROMPT)
    async with running_node(
        NodeConfig(node_id="n0", model=MODEL, segments=[(0, N_BLOCKS)], tls=files)
    ) as node:
        proxy = RecordingProxy(node.address)
        route = Route(0, (Hop("n0", await proxy.start(), 0, N_BLOCKS),))
        client = GrpcSegmentClient(tls=tls)
        try:
            tokens = await _generate(client, route, "capture", 4)
        finally:
            await client.close()
            await proxy.close()
    assert len(tokens) == 4 and proxy.connections >= 1
    assert len(proxy.sent) > len(needle)  # the generation really went through the proxy
    if secure:
        assert needle not in proxy.sent
        assert proxy.sent[:1] == b"\x16"  # a TLS handshake record opens the connection
    else:
        assert needle in proxy.sent  # positive control: plain gRPC carries the prompt in clear


async def test_privacy_critical_blocks_follow_the_certificate_trust(pki: Path) -> None:
    """Neither node's config says trusted; only n0's certificate does."""
    gateway = TlsConfig.load(TlsFilesConfig.in_dir(pki, "gw"))
    outcomes: dict[str, object] = {}
    for name in ("n0", "n1"):
        config = NodeConfig(
            node_id=name,
            model=MODEL,
            segments=[(0, N_BLOCKS)],
            privacy_blocks=[0, 1, N_BLOCKS - 1],
            tls=TlsFilesConfig.in_dir(pki, name),
        )
        async with running_node(config) as node:
            client = GrpcSegmentClient(tls=gateway)
            route = Route(0, (Hop(name, node.address, 0, N_BLOCKS),))
            try:
                step = ChainStep(f"private-{name}", PROMPT, 0, privacy_high=True)
                outcomes[name] = (await client.run_step(route, step, STEP_TIMEOUT_S)).token_id
            except PrivacyViolationError as exc:
                outcomes[name] = exc
            finally:
                await client.close()
    assert isinstance(outcomes["n0"], int)
    assert isinstance(outcomes["n1"], PrivacyViolationError)
    assert "not trusted" in str(outcomes["n1"])
