"""Scales a scenario up to N nodes by replicating its MEC nodes with varied speeds and links.

Pure: a validated ``Scenario`` in, a bigger validated ``Scenario`` out, fixed by the seed. Declared links
keep the template's nominal figures (what an operator would write); only the emulated truth varies, so
the orchestrator has to measure the difference, as it would on real hardware.
"""

from __future__ import annotations

import random
from typing import Any

from edgesplit.errors import ScenarioError
from edgesplit.evaluation.scenario import Scenario

SPEED_SPREAD = (0.6, 1.4)
"""A replica's speed factor is its template's times a uniform draw from this range."""
BANDWIDTH_SPREAD = (0.5, 1.5)
RTT_SPREAD = (0.8, 2.0)


def mec_templates(scenario: Scenario) -> list[str]:
    """The nodes replicated: every non-source node except a cloud (a node called ``cloud``, or the
    untrusted non-source node with the most memory) when there are others."""
    others = [n for n in scenario.nodes if not n.source]
    untrusted = [n for n in others if not n.trusted]
    cloud = next((n.id for n in others if n.id == "cloud"), None)
    if cloud is None and untrusted and len(others) > 1:
        cloud = max(untrusted, key=lambda n: (n.memory, n.id)).id
    return [n.id for n in others if n.id != cloud] or [n.id for n in others]


def scale_scenario(scenario: Scenario, nodes: int, seed: int = 0) -> Scenario:
    """``scenario`` with MEC replicas added until it has ``nodes`` nodes (same workload and events)."""
    have = len(scenario.nodes)
    if nodes < have:
        raise ScenarioError(f"--nodes {nodes}: the scenario already has {have} nodes; give at least {have}")
    templates = mec_templates(scenario)
    if not templates:
        raise ScenarioError("--nodes: the scenario has no non-source node to replicate")
    if nodes == have:
        return scenario
    rng = random.Random(seed)
    data = scenario.model_dump(mode="python")
    base = {n.id: n.id for n in scenario.nodes}
    declared = {_key(p["a"], p["b"]): p for p in data["links"]["pairs"]}
    emulation = data.get("emulation")
    emulated = {} if emulation is None else {_key(x["a"], x["b"]): x for x in emulation["links"]}
    taken = set(base)
    for k in range(have, nodes):
        template = templates[(k - have) % len(templates)]
        new_id = _fresh_id(template, k - have + 1, taken)
        taken.add(new_id)
        spec = next(dict(n) for n in data["nodes"] if n["id"] == template)
        data["nodes"].append({**spec, "id": new_id, "source": False, "address": None})
        if emulation is not None:
            node_emu = dict(emulation["nodes"].get(template, {}))
            node_emu["speed_factor"] = node_emu.get("speed_factor", 1.0) * rng.uniform(*SPEED_SPREAD)
            emulation["nodes"][new_id] = node_emu
        for peer in sorted(base):
            pair = _pair_template(template, base[peer], templates, declared)
            if pair is None:
                continue
            if pair in declared:
                data["links"]["pairs"].append({**declared[pair], "a": new_id, "b": peer})
            if emulation is not None and pair in emulated:
                emulation["links"].append(_varied(emulated[pair], new_id, peer, rng))
        base[new_id] = template
    return Scenario.model_validate(data)


def _pair_template(
    a: str, b: str, templates: list[str], declared: dict[tuple[str, str], Any]
) -> tuple[str, str] | None:
    """Which original link a new pair copies: the templates' own link, or (same template) a MEC–MEC one."""
    if a != b:
        return _key(a, b)
    mec_mec = sorted(k for k in declared if a in k and set(k) <= set(templates) and k[0] != k[1])
    return mec_mec[0] if mec_mec else None


def _varied(link: dict[str, Any], a: str, b: str, rng: random.Random) -> dict[str, Any]:
    out = {**link, "a": a, "b": b}
    out["bandwidth_mbps"] = link["bandwidth_mbps"] * rng.uniform(*BANDWIDTH_SPREAD)
    out["rtt_ms"] = link.get("rtt_ms", 0.0) * rng.uniform(*RTT_SPREAD)
    return out


def _fresh_id(template: str, k: int, taken: set[str]) -> str:
    candidate = f"{template}-r{k}"
    while candidate in taken:
        candidate += "x"
    return candidate


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
