"""The node agent process: gRPC server (node service + health), Prometheus endpoint, housekeeping,
link probes.

Owns the process lifecycle and readiness signals; request handling lives in node/service.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from edgesplit.errors import ConfigError
from edgesplit.node.config import NodeConfig
from edgesplit.node.loading import SegmentSource, source_for
from edgesplit.node.service import NodeService
from edgesplit.node.shard_cache import ShardCache, registry_link_bps, warm_model_imports
from edgesplit.security.pki import Role
from edgesplit.transport.tls import NODE_POLICY, TlsConfig, bind, new_server
from edgesplit.wire.health import add_health
from edgesplit.wire.messages import PlanSegment, PlanSpec
from edgesplit.wire.servicers import add_node_service
from edgesplit.wire.stubs import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

HOUSEKEEPING_PERIOD_S = 1.0


def advertised_address(listen: str, port: int, advertise: str | None) -> str:
    """The HOST:PORT peers dial: ``advertise`` if set, else ``listen`` with its bound port
    (a wildcard host becomes 127.0.0.1)."""
    if advertise:
        return advertise
    host = listen.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def write_ready_file(path: Path, payload: dict[str, object]) -> None:
    """Atomically: launchers poll for the file and must never read half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def certified(config: NodeConfig, tls: TlsConfig) -> NodeConfig:
    """The node's id and trust are its certificate's; a config claiming trust it lacks is refused."""
    who = tls.expect(config.node_id, Role.NODE)
    if config.trusted and not who.trusted:
        raise ConfigError(
            f"node {config.node_id} is configured trusted but its certificate says untrusted; only the CA "
            f"grants trust (`edgesplit certs issue {config.node_id} --trusted`)"
        )
    return config.model_copy(update={"trusted": who.trusted})


class NodeAgent:
    """Runs one node until ``stop`` is set: serve, reap idle sessions, refresh telemetry gauges."""

    def __init__(self, config: NodeConfig, source: SegmentSource | None = None) -> None:
        self.tls = TlsConfig.load(config.tls) if config.tls is not None else None
        if self.tls is not None:
            config = certified(config, self.tls)
        self.config = config
        source = source or source_for(config.model, config.shard_dir, self._shard_cache())
        self.service = NodeService(config, source, self.tls)
        self.address = ""
        self.metrics_port: int | None = None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None) -> None:
        config = self.config
        server = new_server(self.tls, CHANNEL_OPTIONS, NODE_POLICY)
        add_node_service(server, self.service, config.max_tensor_bytes)
        health = await add_health(server)
        port = bind(server, config.listen, self.tls)
        if port == 0:
            raise ConfigError(f"node {config.node_id} cannot listen on {config.listen}")
        await server.start()
        self.address = advertised_address(config.listen, port, config.advertise)
        metrics_server = None
        if config.metrics_port is not None:
            from prometheus_client import start_http_server

            metrics_server, _ = start_http_server(
                config.metrics_port, addr="0.0.0.0", registry=self.service.telemetry_state.registry
            )
            self.metrics_port = int(metrics_server.server_port)
        try:
            async with asyncio.TaskGroup() as tasks:
                self.service.attach(tasks.create_task)
                # 1) Load and commit the start-up segments as epoch 0, then say we serve.
                if config.segments:
                    plan = PlanSpec(0, tuple(PlanSegment(config.node_id, s, e) for s, e in config.segments))
                    await self.service.apply_prepare(plan)
                    await self.service.apply_commit(0)
                    self.service.gate.started(0)
                if config.profile_blocks:
                    await self.service.profile_at_join(config.profile_blocks)
                await health.serving(True)
                # 2) Tell launchers we are ready (ready file and/or callback).
                ready: dict[str, object] = {
                    "node_id": config.node_id,
                    "address": self.address,
                    "metrics_port": self.metrics_port,
                    "pid": os.getpid(),
                }
                if config.ready_file is not None:
                    write_ready_file(config.ready_file, ready)
                if on_ready is not None:
                    on_ready(self.address)
                # 3) Until stopped: housekeeping (idle sessions, telemetry gauges) and link probes to
                #    the peers the orchestrator names in its telemetry requests.
                housekeeping = tasks.create_task(self._housekeeping())
                probing = tasks.create_task(self.service.prober.run())
                await stop.wait()
                log.info("node %s stopping", config.node_id)
                await health.shutdown()
                housekeeping.cancel()
                probing.cancel()
        finally:
            await server.stop(grace=1.0)
            await self.service.close()
            if metrics_server is not None:
                metrics_server.shutdown()
            log.info("node %s stopped", config.node_id)

    def _shard_cache(self) -> ShardCache | None:
        """The on-disk shard cache (``shard_cache``); its downloads pace to the emulated registry link."""
        folder = self.config.shard_cache
        if folder is None:
            return None
        warm_model_imports(folder)
        return ShardCache(folder, lambda: registry_link_bps(self.service.emulation))

    async def _housekeeping(self) -> None:
        period = min(HOUSEKEEPING_PERIOD_S, self.config.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            reaped = await self.service.reap_idle()
            if reaped:
                log.info("node %s dropped %d idle sessions", self.config.node_id, reaped)
            await self.service.telemetry()
