"""Applies a scenario's timed events to a live local cluster, and keeps the oracle's truth file current.

Link and load changes go to the node agents (SetEmulation: each node shapes what it sends); a link
event with the source node at one end also re-shapes the gateway's own sending direction (PUT
/v1/admin/emulation), so both halves of a request cross the new link. A kill is SIGKILL to the node's
process group, found by PID; a return starts the node again on its old address (LocalCluster).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgesplit.cluster.config import ClusterConfig
from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.live import put_gateway_links
from edgesplit.cluster.roles import node_emulation
from edgesplit.errors import EdgesplitError
from edgesplit.evaluation.oracle import TrueLink, TrueNode, Truth
from edgesplit.node.config import EmulationConfig

RESTART_TIMEOUT_S = 90.0
UNSHAPED_MBPS = 100_000.0
"""A loopback pair with no shaping, as the truth file writes it (bandwidth must be positive)."""


class EmulationState:
    """Every node's current emulation section (node/config.py keys), and the truth derived from it."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.source = cluster.source.id
        """Where the gateway runs: its links are also the gateway's own sending direction."""
        self.sections: dict[str, dict[str, Any]] = {
            n.id: node_emulation(cluster, n.id, 0.0) for n in cluster.nodes
        }
        self.down: set[str] = set()
        self.version = 0

    def set_link(self, a: str, b: str, bandwidth_mbps: float | None, rtt_ms: float | None) -> list[str]:
        """Both directions of a–b; returns the nodes whose section changed."""
        for me, peer in ((a, b), (b, a)):
            links = self.sections[me].setdefault("links", {})
            link = dict(links.get(peer, {"bandwidth_mbps": 0.0, "rtt_ms": 0.0}))
            if bandwidth_mbps is not None:
                link["bandwidth_mbps"] = bandwidth_mbps
            if rtt_ms is not None:
                link["rtt_ms"] = rtt_ms
            links[peer] = link
        self.version += 1
        return [a, b]

    def set_load(self, node: str, load: float) -> list[str]:
        self.sections[node]["background_load"] = load
        self.version += 1
        return [node]

    def set_up(self, node: str, up: bool) -> None:
        (self.down.discard if up else self.down.add)(node)
        self.version += 1

    def section(self, node: str) -> dict[str, Any]:
        return copy.deepcopy(self.sections[node])

    def gateway_links(self) -> dict[str, dict[str, float]]:
        """Every link from the source node, as the gateway's emulation update takes them."""
        return copy.deepcopy(self.sections[self.source].get("links", {}))

    def truth(self, at_s: float) -> Truth:
        emulation = self.cluster.emulation
        nodes = {
            n: TrueNode(
                speed_factor=float(s.get("speed_factor", 1.0)),
                background_load=float(s.get("background_load", 0.0)),
                up=n not in self.down,
            )
            for n, s in self.sections.items()
        }
        links: dict[tuple[str, str], TrueLink] = {}
        for me, section in sorted(self.sections.items()):
            for peer, link in sorted(section.get("links", {}).items()):
                key = (me, peer) if me <= peer else (peer, me)
                if key in links or peer not in self.sections:
                    continue
                bw = float(link.get("bandwidth_mbps") or 0.0) or UNSHAPED_MBPS
                links[key] = TrueLink(
                    a=key[0], b=key[1], bandwidth_mbps=bw, rtt_ms=float(link.get("rtt_ms", 0))
                )
        profile = {} if emulation is None else {b: t.decode_ms for b, t in emulation.block_profile.items()}
        return Truth(
            version=self.version, at_s=at_s, nodes=nodes, links=list(links.values()), block_decode_ms=profile
        )


class Disturbances:
    """Plays ``events`` against ``local`` from ``t0`` (monotonic); ``applied`` holds (t_s, label)."""

    def __init__(
        self,
        local: LocalCluster,
        events: Sequence[Any],
        state: EmulationState,
        truth_path: Path | None = None,
        on_event: Callable[[float, str], None] | None = None,
    ) -> None:
        self.local = local
        self.events = sorted(events, key=lambda e: e.at_s)
        self.state = state
        self.truth_path = truth_path
        self.on_event = on_event
        self.applied: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._t0 = time.monotonic()

    async def run(self, t0: float) -> None:
        """Apply every event at ``t0 + at_s``, each on its own (a slow restart delays no other event);
        a failing event is recorded, the rest still run."""
        self._t0 = t0
        await asyncio.gather(*(self._at(event, t0) for event in self.events))

    async def _at(self, event: Any, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + event.at_s - time.monotonic()))
        try:
            label = await self.apply(event)
        except (EdgesplitError, OSError, RuntimeError) as exc:
            self.errors.append(f"{event.kind} at {event.at_s:g} s: {exc}")
            return
        now = time.monotonic() - t0
        self.applied.append((now, label))
        if self.on_event is not None:
            self.on_event(now, label)

    async def apply(self, event: Any) -> str:
        kind = event.kind
        if kind == "link":
            changed = self.state.set_link(event.a, event.b, event.bandwidth_mbps, event.rtt_ms)
            await self._push(changed)
            if self.state.source in changed:
                await asyncio.to_thread(put_gateway_links, self.local.gateway_url, self.state.gateway_links())
            parts = [f"{event.bandwidth_mbps:g} Mbit/s" if event.bandwidth_mbps is not None else ""]
            parts.append(f"{event.rtt_ms:g} ms RTT" if event.rtt_ms is not None else "")
            label = f"link {event.a}~{event.b}: {', '.join(p for p in parts if p)}"
        elif kind == "node_load":
            await self._push(self.state.set_load(event.node, event.load))
            label = f"{event.node} load {event.load:.0%}"
        elif kind == "node_kill":
            await asyncio.to_thread(self.local.kill_node, event.node)
            self.state.set_up(event.node, False)
            label = f"{event.node} killed"
        elif kind == "node_return":
            section = self.state.section(event.node)
            await asyncio.to_thread(self.local.restart_node, event.node, section, RESTART_TIMEOUT_S)
            self.state.set_up(event.node, True)
            await self._push([event.node])  # what changed while it was starting
            label = f"{event.node} back"
        else:
            raise RuntimeError(f"unknown event kind {kind!r}")
        self.write_truth()
        return label

    def write_truth(self) -> None:
        if self.truth_path is not None:
            self.state.truth(time.monotonic() - self._t0).write(self.truth_path)

    async def _push(self, nodes: list[str]) -> None:
        from edgesplit.transport.node_admin import NodeAdmin  # the data plane's client: imports torch

        for node in nodes:
            if node in self.state.down:
                continue  # applied when it comes back (its restart config carries the section)
            admin = NodeAdmin(self.local.addresses[node], self.local.admin_tls)
            try:
                await admin.set_emulation(EmulationConfig.model_validate(self.state.section(node)))
            finally:
                await admin.close()
