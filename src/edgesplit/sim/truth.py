"""The simulated cluster's ground truth: node speed, background load, up/down; link bandwidth and RTT.

Built from the scenario's ``emulation`` section (the one place besides node agents allowed to read it,
DESIGN §3) and changed by its events and traces. Computes how long things really take in the simulator.
Nothing here may reach the adaptive controller: it sees only what ``sensors`` derives from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgesplit.cluster.config import ClusterConfig
from edgesplit.evaluation.oracle import TrueLink, TrueNode, Truth
from edgesplit.evaluation.scenario import Event, LinkEvent, NodeKillEvent, NodeLoadEvent
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import link_key

UNSHAPED_BPS = 100e9
"""A pair with no emulated link is unshaped (the live cluster's loopback); as the oracle's truth writes it."""


@dataclass
class NodeTruth:
    speed_factor: float = 1.0
    background_load: float = 0.0
    memory_cap_bytes: int | None = None
    up: bool = True


@dataclass
class LinkTruth:
    bandwidth_bps: float
    rtt_s: float
    jitter_s: float = 0.0


@dataclass(frozen=True)
class Change:
    """One timed change of the truth (a scenario event or an emulation trace point)."""

    at_s: float
    """Seconds after the load starts (traces: after start-up; both are put on the load's clock)."""
    kind: str
    """``link``, ``node_load``, ``node_kill`` or ``node_return``."""
    a: str
    b: str = ""
    bandwidth_bps: float | None = None
    rtt_s: float | None = None
    load: float | None = None
    label: str = ""
    scenario_event: bool = True
    """Scenario events are reported like `edgesplit bench` reports them; trace points are not."""


class TrueCluster:
    """The truth, mutable as changes apply; ``version`` grows on every change (the oracle re-plans on it)."""

    def __init__(self, cluster: ClusterConfig, blocks: Sequence[BlockCost]) -> None:
        emulation = cluster.emulation
        self.blocks = tuple(blocks)
        self.nodes: dict[str, NodeTruth] = {}
        for n in cluster.nodes:
            emu = None if emulation is None else emulation.nodes.get(n.id)
            self.nodes[n.id] = (
                NodeTruth()
                if emu is None
                else NodeTruth(emu.speed_factor, emu.background_load, emu.memory_cap)
            )
        self.links: dict[tuple[str, str], LinkTruth] = {}
        default = None if emulation is None else emulation.default_link
        ids = sorted(self.nodes)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if default is not None:
                    self.links[(a, b)] = LinkTruth(default.bandwidth_mbps * 1e6, default.rtt_ms / 1e3)
        for link in [] if emulation is None else emulation.links:
            self.links[link_key(link.a, link.b)] = LinkTruth(
                link.bandwidth_mbps * 1e6, link.rtt_ms / 1e3, link.jitter_ms / 1e3
            )
        profile = {} if emulation is None else emulation.block_profile
        # Per block, seconds at speed factor 1: the emulation's profile, else the block's reference cost
        # (the live node would time its real compute there; the simulator has none).
        self.decode_s = [
            profile[b].decode_ms / 1e3 if b in profile else blk.decode_s for b, blk in enumerate(blocks)
        ]
        self.prefill_s_per_token = [
            profile[b].prefill_ms_per_token / 1e3
            if b in profile
            else (blk.prefill_s_per_token if blk.prefill_s_per_token is not None else blk.decode_s)
            for b, blk in enumerate(blocks)
        ]
        self._profiled = {b: t.decode_ms for b, t in profile.items()}
        self.version = 0

    # ---- time ------------------------------------------------------------------------------------

    def compute_s(self, node: str, start: int, end: int, prefill_tokens: int) -> float:
        """One batched step on blocks [start, end): a decode step, or a prefill of ``prefill_tokens``."""
        truth = self.nodes[node]
        if prefill_tokens > 0:
            base = sum(self.prefill_s_per_token[start:end]) * prefill_tokens
        else:
            base = sum(self.decode_s[start:end])
        return base / truth.speed_factor / (1.0 - truth.background_load)

    def link(self, a: str, b: str) -> LinkTruth:
        return self.links.get(link_key(a, b)) or LinkTruth(UNSHAPED_BPS, 0.0)

    def up(self, node: str) -> bool:
        return self.nodes[node].up

    # ---- changes ---------------------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        if change.kind == "link":
            key = link_key(change.a, change.b)
            link = self.links.setdefault(key, LinkTruth(UNSHAPED_BPS, 0.0))
            if change.bandwidth_bps is not None:
                link.bandwidth_bps = change.bandwidth_bps
            if change.rtt_s is not None:
                link.rtt_s = change.rtt_s
        elif change.kind == "node_load":
            assert change.load is not None
            self.nodes[change.a].background_load = change.load
        elif change.kind in ("node_kill", "node_return"):
            self.nodes[change.a].up = change.kind == "node_return"
        else:
            raise ValueError(f"unknown change {change.kind!r}")
        self.version += 1

    def oracle_truth(self, at_s: float) -> Truth:
        """The truth in the shape the evaluation's oracle and static baseline read (evaluation/oracle.py)."""
        return Truth(
            version=self.version,
            at_s=at_s,
            nodes={
                n: TrueNode(speed_factor=t.speed_factor, background_load=t.background_load, up=t.up)
                for n, t in self.nodes.items()
            },
            links=[
                TrueLink(a=a, b=b, bandwidth_mbps=t.bandwidth_bps / 1e6, rtt_ms=t.rtt_s * 1e3)
                for (a, b), t in sorted(self.links.items())
            ],
            block_decode_ms=dict(self._profiled),
        )


def scenario_changes(events: Sequence[Event], cluster: ClusterConfig, lead_in_s: float) -> list[Change]:
    """The scenario's events (on the load's clock) and the emulation's traces (on the start-up clock,
    moved onto the load's by ``lead_in_s``), in time order."""
    out: list[Change] = []
    for e in events:
        if isinstance(e, LinkEvent):
            bw, rtt = e.bandwidth_mbps, e.rtt_ms
            parts = [f"{bw:g} Mbit/s" if bw is not None else "", f"{rtt:g} ms RTT" if rtt is not None else ""]
            label = f"link {e.a}~{e.b}: {', '.join(p for p in parts if p)}"
            bw_bps = None if bw is None else bw * 1e6
            out.append(
                Change(e.at_s, e.kind, e.a, e.b, bw_bps, None if rtt is None else rtt / 1e3, label=label)
            )
        elif isinstance(e, NodeLoadEvent):
            out.append(Change(e.at_s, e.kind, e.node, load=e.load, label=f"{e.node} load {e.load:.0%}"))
        else:
            label = f"{e.node} killed" if isinstance(e, NodeKillEvent) else f"{e.node} back"
            out.append(Change(e.at_s, e.kind, e.node, label=label))
    emulation = cluster.emulation
    if emulation is not None:
        for node_id, emu in emulation.nodes.items():
            for point in emu.load_trace:
                if point.at_s > 0:
                    out.append(
                        Change(
                            point.at_s - lead_in_s,
                            "node_load",
                            node_id,
                            load=point.load,
                            scenario_event=False,
                        )
                    )
        for link in emulation.links:
            for p in link.trace:
                if p.at_s > 0:
                    out.append(
                        Change(
                            p.at_s - lead_in_s,
                            "link",
                            link.a,
                            link.b,
                            None if p.bandwidth_mbps is None else p.bandwidth_mbps * 1e6,
                            None if p.rtt_ms is None else p.rtt_ms / 1e3,
                            scenario_event=False,
                        )
                    )
    return sorted(out, key=lambda c: c.at_s)
