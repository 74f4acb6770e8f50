"""Threads beside a running `edgesplit up` cluster: the emulation trace player and the decision tail.

The trace player is a testbed shell (DESIGN §3): it pushes the cluster file's traces to the node agents
and to the gateway's own sending direction; the orchestrator hears nothing of them and keeps measuring.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgesplit.cluster.config import ClusterConfig
from edgesplit.cluster.roles import node_emulation, trace_times
from edgesplit.errors import EdgesplitError
from edgesplit.transport.tls import TlsConfig

GATEWAY_TIMEOUT_S = 10.0


def put_gateway_links(gateway_url: str, links: dict[str, dict[str, float]]) -> None:
    """Replace the gateway's emulated links (PUT /v1/admin/emulation, as a loopback admin client)."""
    import httpx

    resp = httpx.put(f"{gateway_url}/v1/admin/emulation", json={"links": links}, timeout=GATEWAY_TIMEOUT_S)
    if resp.status_code != 200:
        raise EdgesplitError(f"the gateway refused the link change ({resp.status_code}): {resp.text[:200]}")


class TracePlayer(threading.Thread):
    """Replays the cluster file's load and link traces on the node agents (SetEmulation) and the source's
    links on the gateway (``gateway_url``, when given), on time.

    Time 0 is when the cluster became ready. A process that refuses a change is reported, not fatal.
    """

    def __init__(
        self,
        cluster: ClusterConfig,
        addresses: dict[str, str],
        tls: TlsConfig | None = None,
        gateway_url: str = "",
    ) -> None:
        super().__init__(name="edgesplit-trace-player", daemon=True)
        self.cluster = cluster
        self.addresses = addresses
        self.tls = tls
        self.gateway_url = gateway_url
        self.started_at = time.monotonic()
        self.applied: list[tuple[float, str]] = []
        """(trace time, node id or "gateway") for every change applied."""
        self._stop_event = threading.Event()

    def run(self) -> None:
        import asyncio

        source = self.cluster.source.id
        current = {n.id: node_emulation(self.cluster, n.id, 0.0) for n in self.cluster.nodes}
        for at_s in trace_times(self.cluster):
            if self._stop_event.wait(max(0.0, self.started_at + at_s - time.monotonic())):
                return
            changed = {}
            for node in self.cluster.nodes:
                section = node_emulation(self.cluster, node.id, at_s)
                if section != current[node.id]:
                    if node.id == source and section.get("links") != current[node.id].get("links"):
                        self._apply_gateway(at_s, section.get("links", {}))
                    changed[node.id] = current[node.id] = section
            asyncio.run(self._apply(at_s, changed))

    def _apply_gateway(self, at_s: float, links: dict[str, dict[str, float]]) -> None:
        if not self.gateway_url:
            return
        try:
            put_gateway_links(self.gateway_url, links)
            self.applied.append((at_s, "gateway"))
        except Exception as exc:  # the gateway being away must not stop the node traces
            print(f"edgesplit up: trace at {at_s:g} s not applied on the gateway: {exc}", file=sys.stderr)

    async def _apply(self, at_s: float, changed: dict[str, dict[str, Any]]) -> None:
        from edgesplit.node.config import EmulationConfig
        from edgesplit.transport.node_admin import NodeAdmin

        for node_id, section in changed.items():
            admin = NodeAdmin(self.addresses[node_id], self.tls)
            try:
                await admin.set_emulation(EmulationConfig.model_validate(section))
                self.applied.append((at_s, node_id))
            except EdgesplitError as exc:
                print(f"edgesplit up: trace at {at_s:g} s not applied on {node_id}: {exc}", file=sys.stderr)
            finally:
                await admin.close()

    def stop(self) -> None:
        self._stop_event.set()


class DecisionTail(threading.Thread):
    """Prints the orchestrator's decision lines (``decision: ...`` in its log) as they are written."""

    def __init__(self, log: Path) -> None:
        super().__init__(name="edgesplit-decisions", daemon=True)
        self.log = log
        self._stop_event = threading.Event()

    def run(self) -> None:
        offset = 0
        while not self._stop_event.wait(0.2):
            with contextlib.suppress(OSError):
                with self.log.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                end = chunk.rfind(b"\n") + 1
                offset += end
                for line in chunk[:end].decode(errors="replace").splitlines():
                    if line.startswith("decision: "):
                        print(f"  {line}", flush=True)

    def stop(self) -> None:
        self._stop_event.set()
