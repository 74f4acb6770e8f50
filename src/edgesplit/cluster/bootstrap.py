"""Initial plan from declared facts, before anything is measured (the orchestrator's baseline d_0).

Reads only what an operator declares (nodes, trust, memory, links, privacy, weights) and the model's
block sizes; never the ``emulation`` section (DESIGN §3). Deployment is the orchestrator service's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesplit.cluster.config import ClusterConfig
from edgesplit.errors import InfeasibleError

#: Reference compute rate for the cost model until nodes are profiled: FLOP/s of a speed-1.0 node.
REFERENCE_FLOPS_PER_S = 1e9


@dataclass(frozen=True)
class ModelFacts:
    """Per-block costs of the served model: bytes held and emitted, FLOPs of one decode step."""

    names: tuple[str, ...]
    param_bytes: tuple[int, ...]
    kv_bytes_per_token: tuple[int, ...]
    out_bytes: tuple[int, ...]
    decode_flops: tuple[int, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class InitialPlan:
    assignment: tuple[str, ...]
    solver: str
    cost: dict[str, float]

    def segments(self) -> list[tuple[str, int, int]]:
        """Runs of equal nodes as (node, start, end)."""
        out: list[tuple[str, int, int]] = []
        for block, node in enumerate(self.assignment):
            if out and out[-1][0] == node:
                out[-1] = (node, out[-1][1], block + 1)
            else:
                out.append((node, block, block + 1))
        return out


def model_facts(model_path: Path, context_tokens: int = 0) -> ModelFacts:
    """Block costs from the model core's cost model (loads the checkpoint once on CPU, no timing)."""
    from edgesplit.model.block_profile import model_costs
    from edgesplit.model.loader import load_block_model

    costs = model_costs(load_block_model(model_path), measure=False).blocks
    return ModelFacts(
        names=tuple(c.name for c in costs),
        param_bytes=tuple(c.param_bytes for c in costs),
        kv_bytes_per_token=tuple(c.kv_bytes_per_token for c in costs),
        out_bytes=tuple(c.out_bytes_per_token for c in costs),
        decode_flops=tuple(c.flops.decode(context_tokens) for c in costs),
    )


def planner_problem(cluster: ClusterConfig, facts: ModelFacts, privacy_blocks: list[int]) -> dict[str, Any]:
    """The §4.2 problem from declared facts: unmeasured nodes count as speed 1.0 and idle."""
    blocks = [
        {
            "name": facts.names[b],
            "work_ms": facts.decode_flops[b] / REFERENCE_FLOPS_PER_S * 1e3,
            "param_bytes": facts.param_bytes[b],
            "kv_bytes_per_token": facts.kv_bytes_per_token[b],
            "out_bytes": facts.out_bytes[b],
            "privacy": b in privacy_blocks,
        }
        for b in range(facts.num_blocks)
    ]
    nodes = [
        {"id": n.id, "speed": 1.0, "mem_bytes": n.memory, "util": 0.0, "trusted": n.trusted}
        for n in sorted(cluster.nodes, key=lambda n: n.id)
    ]
    declared = {tuple(sorted((p.a, p.b))): p for p in cluster.links.pairs}
    links = []
    ids = sorted(n.id for n in cluster.nodes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            link = declared.get((a, b)) or cluster.links.default
            if link is not None:
                links.append({"a": a, "b": b, "bandwidth_mbps": link.bandwidth_mbps, "rtt_ms": link.rtt_ms})
    w = cluster.weights
    return {
        "blocks": blocks,
        "nodes": nodes,
        "links": links,
        "source": cluster.source.id,
        "privacy": cluster.request_privacy,
        "weights": {"alpha": w.alpha, "beta": w.beta, "gamma": w.gamma},
    }


def initial_plan(cluster: ClusterConfig, facts: ModelFacts, privacy_blocks: list[int]) -> InitialPlan:
    """The planner's optimum over declared facts; the simple plan if the planner finds none."""
    try:
        from edgesplit.orchestrator.planner import parse_problem, solve
    except ImportError:
        return simple_plan(cluster, facts, privacy_blocks)
    try:
        plan = solve(parse_problem(planner_problem(cluster, facts, privacy_blocks)), "auto")
    except InfeasibleError:
        return simple_plan(cluster, facts, privacy_blocks)
    cost = {k: float(v) for k, v in plan.cost.to_json().items() if isinstance(v, int | float)}
    return InitialPlan(tuple(plan.assignment), f"planner:{plan.solver}", cost)


def simple_plan(cluster: ClusterConfig, facts: ModelFacts, privacy_blocks: list[int]) -> InitialPlan:
    """Privacy blocks on the source; every other block on the largest-memory other node.

    Nothing is measured yet, so declared memory stands in for capacity; a cluster of one node keeps
    everything on the source.
    """
    source = cluster.source.id
    others = sorted((n for n in cluster.nodes if n.id != source), key=lambda n: (-n.memory, n.id))
    target = others[0].id if others else source
    assignment = tuple(source if b in privacy_blocks else target for b in range(facts.num_blocks))
    return InitialPlan(assignment, "simple", {})
