"""What each process of a cluster is given: a node agent's config (with its emulation) and the gateway's.

The only place the cluster's ``emulation`` section is read (DESIGN §3): it goes to node agents and the
gateway's transport, never to planning code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgesplit.cluster.config import ClusterConfig, LinkEmulation
from edgesplit.gateway.config import EmulatedLinkConfig, GatewayConfig, GatewayNodeConfig


def num_blocks_of(model_path: Path) -> int:
    """Embedding + layers + head, from the checkpoint's config.json (no torch)."""
    config = json.loads((model_path / "config.json").read_text())
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    if not isinstance(layers, int):
        raise ValueError(f"{model_path}/config.json has no num_hidden_layers")
    return layers + 2


def _links_from(cluster: ClusterConfig, node_id: str, at_s: float = 0.0) -> dict[str, dict[str, float]]:
    """The emulated link from ``node_id`` to each peer at ``at_s`` (links are shaped both ways)."""
    emulation = cluster.emulation
    if emulation is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    default = emulation.default_link
    if default is not None:
        for peer in cluster.nodes:
            if peer.id != node_id:
                out[peer.id] = {"bandwidth_mbps": default.bandwidth_mbps, "rtt_ms": default.rtt_ms}
    for link in emulation.links:
        if node_id in (link.a, link.b):
            out[link.b if link.a == node_id else link.a] = _shape(link, at_s)
    return out


def _shape(link: LinkEmulation, at_s: float) -> dict[str, float]:
    """The link's values at ``at_s``: the last trace point at or before it overrides the base values."""
    bandwidth, rtt = link.bandwidth_mbps, link.rtt_ms
    for point in sorted(link.trace, key=lambda p: p.at_s):
        if point.at_s <= at_s:
            bandwidth = point.bandwidth_mbps if point.bandwidth_mbps is not None else bandwidth
            rtt = point.rtt_ms if point.rtt_ms is not None else rtt
    return {"bandwidth_mbps": bandwidth, "rtt_ms": rtt, "jitter_ms": link.jitter_ms}


def trace_times(cluster: ClusterConfig) -> list[float]:
    """Every time (seconds after start-up) at which some node's emulation changes."""
    emulation = cluster.emulation
    if emulation is None:
        return []
    times = {p.at_s for n in emulation.nodes.values() for p in n.load_trace}
    times |= {p.at_s for link in emulation.links for p in link.trace}
    return sorted(t for t in times if t > 0)


def node_emulation(cluster: ClusterConfig, node_id: str, at_s: float = 0.0) -> dict[str, Any]:
    """The node agent's ``emulation`` section (node/config.py EmulationConfig keys) at ``at_s``."""
    emulation = cluster.emulation
    if emulation is None:
        return {}
    mine = emulation.nodes.get(node_id)
    section: dict[str, Any] = {"links": _links_from(cluster, node_id, at_s)}
    if mine is not None:
        section["speed_factor"] = mine.speed_factor
        load = mine.background_load
        for point in sorted(mine.load_trace, key=lambda p: p.at_s):
            if point.at_s <= at_s:
                load = point.load
        section["background_load"] = load
        if mine.memory_cap is not None:
            section["memory_cap_bytes"] = mine.memory_cap
    if emulation.block_profile:
        section["block_profile"] = {str(b): t.model_dump() for b, t in emulation.block_profile.items()}
    return section


def node_config(
    cluster: ClusterConfig,
    node_id: str,
    model_path: Path,
    listen: str,
    ready_file: Path | None,
    num_blocks: int | None = None,
) -> dict[str, Any]:
    """A NodeConfig mapping for ``edgesplit node --config``; with ``num_blocks``, the node also learns
    the privacy-critical blocks it must refuse for privacy-high requests unless trusted."""
    config: dict[str, Any] = {"node_id": node_id, "listen": listen, "model": str(model_path)}
    if num_blocks is not None:  # profiled at join: its speed is known before it serves
        config["profile_blocks"] = num_blocks
    config["trusted"] = any(n.trusted for n in cluster.nodes if n.id == node_id)
    if num_blocks is not None:
        config["privacy_blocks"] = cluster.privacy.block_indices(num_blocks)
    if ready_file is not None:
        config["ready_file"] = str(ready_file)
    emulation = node_emulation(cluster, node_id)
    if emulation:
        config["emulation"] = emulation
    return config


def gateway_config(
    cluster: ClusterConfig,
    model_path: Path,
    addresses: dict[str, str] | None = None,
    pids: dict[str, int] | None = None,
) -> GatewayConfig:
    """The gateway of ``cluster``: it runs on the source node and routes to every declared node."""
    addresses = addresses or {}
    pids = pids or {}
    num_blocks = num_blocks_of(model_path)
    source = cluster.source.id
    section = cluster.gateway
    return GatewayConfig(
        model_name=cluster.model,
        model_path=model_path,
        nodes=[
            GatewayNodeConfig(
                id=n.id,
                address=addresses.get(n.id, n.address or ""),
                trusted=n.trusted,
                source=n.source,
                pid=pids.get(n.id),
            )
            for n in cluster.nodes
        ],
        privacy_blocks=cluster.privacy.block_indices(num_blocks),
        max_prompt_tokens=section.max_prompt_tokens,
        max_output_tokens=section.max_output_tokens,
        request_timeout_s=section.request_timeout_s,
        step_timeout_s=section.step_timeout_s,
        max_concurrent_requests=section.max_concurrent_requests,
        chain_driven=section.chain_driven,
        max_reprefills=4,
        failover_wait_s=section.request_timeout_s,  # the orchestrator re-plans around a lost node
        privacy_wait_s=section.request_timeout_s / 2,  # and commits a privacy-keeping plan on demand
        source_node=source,
        emulated_links={p: EmulatedLinkConfig(**s) for p, s in _links_from(cluster, source).items()},
    )
