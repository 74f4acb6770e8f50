"""Builds the planner problem (DESIGN §4.2) from E(t), the model's block costs and the cluster's facts.

Pure. Facts are what an operator declares (trust, memory, source, privacy blocks, weights, nominal
links as priors); everything that varies — speed, load, bandwidth, RTT — comes from measurements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgesplit.orchestrator.profiler import EnvironmentState, link_key


@dataclass(frozen=True)
class BlockCost:
    """One block's reference costs: seconds per token on a speed-1.0 node, bytes it holds and emits."""

    name: str
    decode_s: float
    param_bytes: int
    out_bytes: int
    kv_bytes_per_token: int = 0
    prefill_s_per_token: float | None = None
    privacy: bool = False


@dataclass(frozen=True)
class NodeFacts:
    """What the cluster file declares about a node (not emulation: trust, memory budget, role)."""

    node_id: str
    trusted: bool
    mem_bytes: int
    source: bool = False
    speed_prior: float = 1.0
    """Used until the node has reported measured block times; 1.0 means 'no idea, assume reference'."""


@dataclass(frozen=True)
class LinkPrior:
    """A declared link (it exists, and its nominal quality until probes have measured it)."""

    a: str
    b: str
    bandwidth_bps: float
    rtt_s: float


@dataclass(frozen=True)
class ClusterFacts:
    nodes: tuple[NodeFacts, ...]
    links: tuple[LinkPrior, ...] = ()
    default_link: LinkPrior | None = None
    """When set, every pair without a declared link is connected with these nominal figures."""
    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 0.0
    input_bytes: int = 4
    context_tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        sources = [n.node_id for n in self.nodes if n.source]
        if len(sources) != 1:
            raise ValueError(f"exactly one node must be the source, found {sources}")
        return sources[0]

    def node(self, node_id: str) -> NodeFacts:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)


def build_problem(
    env: EnvironmentState,
    blocks: Sequence[BlockCost],
    facts: ClusterFacts,
    privacy: Literal["high", "none"] = "high",
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The §4.2 problem (as its JSON dict, ms and Mbit/s at this edge) for the live nodes of E(t).

    ``exclude`` drops nodes (dead, or marked failed by an aborted prepare). Nodes and links are
    emitted in sorted order so that the planner sees identical input for identical measurements.
    """
    live = sorted(n.node_id for n in facts.nodes if n.node_id not in exclude)
    param_by_block = [b.param_bytes for b in blocks]
    nodes = []
    for node_id in live:
        fact = facts.node(node_id)
        prof = env.nodes.get(node_id)
        speed = fact.speed_prior if prof is None or prof.speed is None else prof.speed
        util = 0.0 if prof is None else prof.background_util
        mem = fact.mem_bytes
        if prof is not None and prof.mem_available_bytes > 0:
            # What is free now plus what our own loaded blocks occupy (they would be reused or freed).
            ours = sum(param_by_block[b] for b in prof.loaded_blocks if 0 <= b < len(blocks))
            mem = min(mem, prof.mem_available_bytes + ours)
        nodes.append({"id": node_id, "speed": speed, "mem_bytes": mem, "util": util, "trusted": fact.trusted})
    links = _links(env, facts, live)
    return {
        "blocks": [
            {
                "name": b.name,
                "work_ms": b.decode_s * 1e3,
                "param_bytes": b.param_bytes,
                "kv_bytes_per_token": b.kv_bytes_per_token,
                "out_bytes": b.out_bytes,
                "privacy": b.privacy,
            }
            for b in blocks
        ],
        "nodes": nodes,
        "links": links,
        "source": facts.source,
        "input_bytes": facts.input_bytes,
        "context_tokens": max(facts.context_tokens, round(env.mean_context_tokens)),
        "sessions": max(1, env.live_sessions),
        "token_rate": env.tokens_per_s,
        "privacy": privacy,
        "weights": {"alpha": facts.alpha, "beta": facts.beta, "gamma": facts.gamma},
    }


def _links(env: EnvironmentState, facts: ClusterFacts, live: list[str]) -> list[dict[str, Any]]:
    priors = {link_key(p.a, p.b): p for p in facts.links}
    out = []
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            key = link_key(a, b)
            prior = priors.get(key, facts.default_link)
            measured = env.links.get(key)
            bw = measured.bandwidth_bps if measured is not None else None
            rtt = measured.rtt_s if measured is not None else None
            if bw is None and prior is not None:
                bw = prior.bandwidth_bps
            if rtt is None and prior is not None:
                rtt = prior.rtt_s
            if bw is None or rtt is None:
                continue
            out.append({"a": key[0], "b": key[1], "bandwidth_mbps": bw / 1e6, "rtt_ms": rtt * 1e3})
    return out
