"""Test-side factories and an independent brute-force oracle for the planner (DESIGN §4.2 formulas).

The oracle re-implements the cost model from the contract text on plain dicts, sharing no code with
the planner, so agreement between the two is evidence and not a tautology.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import strategies as st


def make_problem(n_nodes: int = 3, n_blocks: int = 4, **overrides: Any) -> dict[str, Any]:
    """A small device → MEC chain problem; ``overrides`` replace top-level keys."""
    blocks = [
        {
            "name": f"b{i}",
            "work_ms": 2.0,
            "param_bytes": 100,
            "kv_bytes_per_token": 0,
            "out_bytes": 1000,
            "privacy": i in (0, n_blocks - 1),
        }
        for i in range(n_blocks)
    ]
    nodes = [{"id": "device", "speed": 0.5, "mem_bytes": 10_000, "util": 0.1, "trusted": True}]
    nodes += [
        {"id": f"mec{i}", "speed": 4.0, "mem_bytes": 10_000, "util": 0.2, "trusted": False}
        for i in range(1, n_nodes)
    ]
    links = [
        {"a": a["id"], "b": b["id"], "bandwidth_mbps": 100.0, "rtt_ms": 2.0}
        for a, b in itertools.combinations(nodes, 2)
    ]
    problem = {"blocks": blocks, "nodes": nodes, "links": links, "source": "device"}
    problem.update(overrides)
    return problem


def _sources(d: dict[str, Any]) -> list[dict[str, Any]]:
    top = {
        "token_rate": d.get("token_rate", 0.0),
        "sessions": d.get("sessions", 1),
        "input_bytes": d.get("input_bytes", 4),
        "privacy": d.get("privacy", "high"),
    }
    if "sources" in d:
        return [{**top, **{k: v for k, v in s.items() if v is not None}} for s in d["sources"]]
    return [{**top, "node": d["source"]}]


def oracle_cost(d: dict[str, Any], assignment: Sequence[str] | dict[str, Sequence[str]]) -> dict[str, Any]:
    """{feasible, phi, latency, U, P, bottleneck} straight from the §4.2 text (multi-source as documented)."""
    nodes = {n["id"]: n for n in d["nodes"]}
    blocks = d["blocks"]
    links = {}
    for lk in d.get("links", []):
        links[(lk["a"], lk["b"])] = links[(lk["b"], lk["a"])] = lk
    w = {"alpha": 1.0, "beta": 0.0, "gamma": 0.0, **d.get("weights", {})}
    ctx = d.get("context_tokens", 0)
    srcs = _sources(d)
    per_src = assignment if isinstance(assignment, dict) else {srcs[0]["node"]: assignment}
    feasible = True
    link_time: dict[frozenset[str], float] = {}

    def hop(i: str, j: str, nbytes: float) -> float:
        nonlocal feasible
        if i == j:
            return 0.0
        if (i, j) not in links:
            feasible = False
            return math.inf
        lk = links[(i, j)]
        t = lk.get("rtt_ms", 0.0) / 2 + nbytes / (lk["bandwidth_mbps"] * 125)
        key = frozenset((i, j))
        link_time[key] = link_time.get(key, 0.0) + t
        return t

    def compute(b: dict[str, Any], n: dict[str, Any], idx: int) -> float:
        work = n["block_ms"][idx] * n["speed"] if n.get("block_ms") else b["work_ms"]
        return work / (n["speed"] * (1 - n.get("util", 0.0)))

    lat, busy, load, P = [], {n: 0.0 for n in nodes}, {n: 0.0 for n in nodes}, 0
    held: dict[str, set[int]] = {n: set() for n in nodes}
    kv: dict[str, float] = {n: 0.0 for n in nodes}
    for s in srcs:
        x = per_src[s["node"]]
        L = hop(s["node"], x[0], s["input_bytes"])
        for b, blk in enumerate(blocks):
            node = nodes[x[b]]
            c = compute(blk, node, b)
            L += c
            busy[x[b]] += c
            load[x[b]] += s["token_rate"] / 1000 * (c * (1 - node.get("util", 0.0)))
            held[x[b]].add(b)
            kv[x[b]] += blk.get("kv_bytes_per_token", 0) * ctx * s["sessions"]
            if blk.get("privacy") and not node.get("trusted"):
                P += 1
                if s["privacy"] == "high":
                    feasible = False
            L += hop(x[b], x[b + 1] if b + 1 < len(blocks) else s["node"], blk.get("out_bytes", 0))
        lat.append(L)
    for n, node in nodes.items():
        if sum(blocks[b].get("param_bytes", 0) for b in held[n]) + kv[n] > node["mem_bytes"]:
            feasible = False
    rates = [s["token_rate"] for s in srcs]
    shares = [r / sum(rates) for r in rates] if sum(rates) > 0 else [1 / len(srcs)] * len(srcs)
    latency = sum(a * b for a, b in zip(shares, lat, strict=True))
    U = max(nodes[n].get("util", 0.0) + load[n] for n in nodes)
    phi = w["alpha"] * latency + w["beta"] * U + w["gamma"] * P
    bottleneck = max([*busy.values(), *link_time.values()])
    return {"feasible": feasible, "phi": phi, "latency": latency, "U": U, "P": P, "bottleneck": bottleneck}


def all_assignments(d: dict[str, Any]) -> Iterable[dict[str, tuple[str, ...]]]:
    ids = [n["id"] for n in d["nodes"]]
    srcs = [s["node"] for s in _sources(d)]
    per = list(itertools.product(ids, repeat=len(d["blocks"])))
    for combo in itertools.product(per, repeat=len(srcs)):
        yield dict(zip(srcs, combo, strict=True))


def brute_force(d: dict[str, Any], objective: str = "latency", keep=None) -> tuple[float, dict] | None:
    """Minimum objective over every feasible assignment (``keep`` filters assignments), or None."""
    gamma = d.get("weights", {}).get("gamma", 0.0)
    best: tuple[float, dict] | None = None
    for a in all_assignments(d):
        if keep is not None and not keep(a):
            continue
        c = oracle_cost(d, a)
        if not c["feasible"]:
            continue
        value = c["phi"] if objective == "latency" else c["bottleneck"] + gamma * c["P"]
        if best is None or value < best[0]:
            best = (value, a)
    return best


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-9


_pos = st.floats(0.1, 10.0).map(lambda x: round(x, 3))


@st.composite
def problems(
    draw: st.DrawFn,
    max_blocks: int = 4,
    max_nodes: int = 3,
    n_sources: int = 1,
    *,
    tight: bool = False,
) -> dict[str, Any]:
    """Random small problems: memory often binds, links go missing, privacy and weights vary.

    ``tight``: the run search's domain — at least 2 blocks on at least 2 nodes that hold a few blocks
    each (plans must spread and may revisit a node), and an additive Φ (β = 0).
    """
    lo = 2 if tight else 1
    n_blocks = draw(st.integers(lo, max_blocks))
    n_nodes = draw(st.integers(max(lo, n_sources), max_nodes))
    ids = [f"n{i}" for i in range(n_nodes)]
    blocks = [
        {
            "name": f"b{i}",
            "work_ms": draw(st.floats(0.0, 20.0).map(lambda x: round(x, 3))),
            "param_bytes": draw(st.integers(20, 100) if tight else st.integers(0, 100)),
            "kv_bytes_per_token": draw(st.sampled_from([0, 1, 2])),
            "out_bytes": draw(st.integers(0, 5000)),
            "privacy": draw(st.booleans()),
        }
        for i in range(n_blocks)
    ]
    nodes = [
        {
            "id": nid,
            "speed": draw(_pos),
            "mem_bytes": draw(st.integers(40, 320) if tight else st.integers(0, 400)),
            "util": draw(st.floats(0.0, 0.9).map(lambda x: round(x, 3))),
            "trusted": draw(st.booleans()),
        }
        for nid in ids
    ]
    links = [
        {
            "a": a,
            "b": b,
            "bandwidth_mbps": draw(st.floats(1.0, 1000.0).map(lambda x: round(x, 2))),
            "rtt_ms": draw(st.floats(0.0, 50.0).map(lambda x: round(x, 2))),
        }
        for a, b in itertools.combinations(ids, 2)
        if draw(st.integers(0, 4)) > 0
    ]
    d: dict[str, Any] = {
        "blocks": blocks,
        "nodes": nodes,
        "links": links,
        "input_bytes": draw(st.integers(0, 100)),
        # KV memory (context × sessions × ≤ 2 B per block) stays a fraction of a tight node's memory.
        "context_tokens": draw(st.integers(0, 10 if tight else 20)),
        "sessions": draw(st.integers(1, 2 if tight else 3)),
        "token_rate": draw(st.sampled_from([0.0, 5.0, 40.0])),
        "privacy": draw(st.sampled_from(["high", "none"])),
        "weights": {
            "alpha": draw(st.sampled_from([1.0, 0.5, 2.0])),
            "beta": 0.0 if tight else draw(st.sampled_from([0.0, 0.0, 10.0, 100.0])),
            "gamma": draw(st.sampled_from([0.0, 0.0, 5.0])),
        },
    }
    chosen = draw(st.permutations(ids))[:n_sources]
    if n_sources == 1:
        d["source"] = chosen[0]
    else:
        d["sources"] = [{"node": s, "token_rate": draw(st.sampled_from([0.0, 10.0, 30.0]))} for s in chosen]
    return d
