"""The gateway process: gRPC client to the nodes, the FastAPI app under uvicorn, readiness, shutdown.

Run: edgesplit gateway CLUSTER.yaml --listen 127.0.0.1:8000   (or --config GATEWAY.json)
Binds its socket itself so port 0 works, then prints and writes (``--ready-file``) the URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

from edgesplit.errors import ConfigError
from edgesplit.gateway.config import GatewayConfig
from edgesplit.listen import listen_socket, socket_url
from edgesplit.security.pki import Role
from edgesplit.transport.tls import TlsConfig, TlsFilesConfig

TELEMETRY_TIMEOUT_S = 1.0


def bind_listen(listen: str) -> socket.socket:
    """The gateway's listening socket, inheritable so a supervisor can hand it on."""
    sock = listen_socket(listen, "--listen", "127.0.0.1:8000 or 0.0.0.0:0")
    sock.set_inheritable(True)
    return sock


def public_url(sock: socket.socket, scheme: str = "http") -> str:
    return socket_url(sock, scheme)


def serve(
    config: GatewayConfig,
    listen: str,
    ready_file: Path | None = None,
    tls_files: TlsFilesConfig | None = None,
    https: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight cleanup and close the node channels.

    ``tls_files``: mTLS to the nodes with the gateway's certificate; ``https`` also serves the HTTP
    API over TLS with it (clients verify against the cluster CA).
    """
    tls = None
    if tls_files is not None:
        tls = TlsConfig.load(tls_files)
        tls.expect(tls.identity.name, Role.GATEWAY)
    elif https:
        raise ConfigError("--https needs the gateway's certificate: give --tls-dir")
    asyncio.run(_serve(config, bind_listen(listen), ready_file, tls, tls_files if https else None))


async def _serve(
    config: GatewayConfig,
    sock: socket.socket,
    ready_file: Path | None,
    tls: TlsConfig | None = None,
    https_files: TlsFilesConfig | None = None,
) -> None:
    import uvicorn

    from edgesplit.gateway.app import create_app
    from edgesplit.transport.grpc_client import GrpcSegmentClient

    client = GrpcSegmentClient(
        source_node_id=config.source_node,
        links={peer: link.spec() for peer, link in config.emulated_links.items()},
        sink_listen=config.reply_listen,
        sink_host=config.reply_host,
        tls=tls,
    )
    await client.start()
    app = create_app(config, client, telemetry=_node_telemetry(config, tls))
    ssl: dict[str, Any] = {}
    if https_files is not None:
        ssl = {"ssl_certfile": str(https_files.cert), "ssl_keyfile": str(https_files.key)}
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5, **ssl)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))

    async def announce() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.01)
        if server.started:
            url = public_url(sock, "https" if ssl else "http")
            if ready_file is not None:
                _write_atomically(ready_file, {"url": url, "pid": os.getpid()})
            print(f"edgesplit gateway ready on {url}", flush=True)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(announce())
        tasks.create_task(server.serve(sockets=[sock]))


def _node_telemetry(config: GatewayConfig, tls: TlsConfig | None = None) -> Any:
    """A TelemetrySource asking each node for its self-report (short deadline; missing nodes say so)."""
    from edgesplit.transport.node_admin import NodeAdmin

    admins: dict[str, NodeAdmin] = {}

    async def one(node_id: str, address: str) -> dict[str, Any]:
        admin = admins.get(node_id)
        if admin is None:
            admin = admins[node_id] = NodeAdmin(address, tls)
        try:
            snap = await admin.telemetry(timeout_s=TELEMETRY_TIMEOUT_S)
        except Exception as exc:  # a node that does not answer is reported, not fatal
            return {
                "reachable": False,
                "telemetry_error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            }
        return {
            "reachable": True,
            "cpu_utilization": snap.cpu_utilization,
            "node_rss_bytes": snap.rss_bytes,
            "gpu_utilization": snap.gpu_utilization,
            "active_sessions": snap.active_sessions,
            "queue_depth": snap.queue_depth,
            "epochs": list(snap.epochs),
            "segments": [
                {"start": s.start, "end": s.end, "decode_s_per_step": s.decode_s_per_step, "steps": s.steps}
                for s in snap.segments
            ],
            "uptime_s": snap.uptime_s,
        }

    async def telemetry() -> dict[str, dict[str, Any]]:
        nodes = [n for n in config.nodes if n.address]
        results = await asyncio.gather(*(one(n.id, n.address) for n in nodes))
        return {n.id: r for n, r in zip(nodes, results, strict=True)}

    return telemetry


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
