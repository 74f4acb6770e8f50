"""The orchestrator's inputs from an operator's cluster file: declared facts (``ClusterFacts``) and the
model's reference block costs (``BlockCost``). Never reads the ``emulation`` section (DESIGN §3).
"""

from __future__ import annotations

from pathlib import Path

from edgesplit.cluster.config import ClusterConfig
from edgesplit.orchestrator.problem_builder import BlockCost, ClusterFacts, LinkPrior, NodeFacts

#: Compute rate of a speed-1.0 node for the reference block times, FLOP/s (until nodes are profiled).
REFERENCE_FLOPS_PER_S = 1e9


def declared_facts(cluster: ClusterConfig) -> ClusterFacts:
    """Nodes (trust, memory, source), declared links and weights: nothing else of the file is read."""
    default = cluster.links.default
    return ClusterFacts(
        nodes=tuple(
            NodeFacts(n.id, n.trusted, int(n.memory), n.source)
            for n in sorted(cluster.nodes, key=lambda n: n.id)
        ),
        links=tuple(LinkPrior(p.a, p.b, p.bandwidth_mbps * 1e6, p.rtt_ms / 1e3) for p in cluster.links.pairs),
        default_link=None
        if default is None
        else LinkPrior("*", "*", default.bandwidth_mbps * 1e6, default.rtt_ms / 1e3),
        alpha=cluster.weights.alpha,
        beta=cluster.weights.beta,
        gamma=cluster.weights.gamma,
    )


def block_costs(model_path: Path, privacy: list[int] | None = None) -> list[BlockCost]:
    """Reference per-block costs from the model core's cost model (FLOPs, bytes; nothing timed)."""
    from edgesplit.model.block_profile import model_costs
    from edgesplit.model.loader import load_block_model

    costs = model_costs(load_block_model(model_path), measure=False).blocks
    critical = set(privacy or ())
    return [
        BlockCost(
            name=c.name,
            decode_s=c.flops.decode(0) / REFERENCE_FLOPS_PER_S,
            param_bytes=c.param_bytes,
            out_bytes=c.out_bytes_per_token,
            kv_bytes_per_token=c.kv_bytes_per_token,
            privacy=i in critical,
        )
        for i, c in enumerate(costs)
    ]
