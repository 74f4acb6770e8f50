"""ShouldReconfigure(E(t), Θ): the paper's four triggers plus node loss, with hysteresis.

Pure: takes E(t), the thresholds, the current plan and the previous trigger state, returns which
triggers are active with their measured values. Deciding what to do about them is ``controller.py``'s.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgesplit.orchestrator.events import TriggerFiring, TriggerKind
from edgesplit.orchestrator.profiler import EnvironmentState


@dataclass(frozen=True)
class Thresholds:
    """Θ, in seconds, fractions and bit/s; defaults are the paper's Table 3."""

    latency_max_s: float = 0.150
    utilization_max: float = 0.85
    bandwidth_min_bps: float = 50e6
    cooldown_s: float = 30.0

    @classmethod
    def from_cluster_units(
        cls,
        latency_ms: float = 150.0,
        utilization: float = 0.85,
        bandwidth_mbps: float = 50.0,
        cooldown_s: float = 30.0,
    ) -> Thresholds:
        """From the cluster file's units (§4.3: ms, fraction, Mbit/s, s)."""
        return cls(latency_ms / 1e3, utilization, bandwidth_mbps * 1e6, cooldown_s)


@dataclass(frozen=True)
class Hysteresis:
    """How far a value must come back before a trigger clears, and how long it must persist to fire.

    A value hovering at the threshold fires at most once: it must first fall below the release
    level (``release_fraction`` inside the threshold; utilisation uses an absolute band) to re-arm.
    """

    release_fraction: float = 0.10
    utilization_release: float = 0.05
    persist_ticks: int = 2
    """Consecutive monitoring cycles over the threshold before the trigger fires (the paper's window Δt)."""


@dataclass(frozen=True)
class TriggerState:
    """What the triggers remember between cycles: over-threshold streaks and which are active."""

    streaks: Mapping[TriggerKind, int] = field(default_factory=dict)
    active: frozenset[TriggerKind] = frozenset()


@dataclass(frozen=True)
class TriggerDecision:
    firing: tuple[TriggerFiring, ...]
    newly_fired: frozenset[TriggerKind]
    state: TriggerState

    @property
    def reconfigure(self) -> bool:
        return bool(self.firing)

    @property
    def urgent(self) -> bool:
        return any(f.kind.urgent for f in self.firing)


@dataclass(frozen=True)
class PlanView:
    """What the triggers need to know about the current plan and the cluster's fixed facts."""

    assignment: tuple[str, ...]
    source: str
    trusted: Mapping[str, bool]
    privacy_blocks: frozenset[int]


def active_links(assignment: Sequence[str], source: str) -> tuple[tuple[str, str], ...]:
    """The hops a step travels: source → first block's node → … → last block's node → source."""
    chain = [source, *assignment, source]
    return tuple((a, b) for a, b in itertools.pairwise(chain) if a != b)


def privacy_exposure(view: PlanView) -> int:
    """Number of privacy-critical blocks the plan puts on untrusted nodes (the cost model's P)."""
    return sum(
        1
        for b in view.privacy_blocks
        if b < len(view.assignment) and not view.trusted.get(view.assignment[b], False)
    )


def should_reconfigure(
    env: EnvironmentState,
    thresholds: Thresholds,
    view: PlanView,
    previous: TriggerState,
    pending_privacy_high: int = 0,
    dead_nodes: frozenset[str] = frozenset(),
    hysteresis: Hysteresis | None = None,
) -> TriggerDecision:
    """Which triggers are active at E(t). Latency, utilisation and bandwidth pass through hysteresis;
    privacy and node loss fire at once (they are violations, not trends)."""
    h = hysteresis or Hysteresis()
    plan_nodes = sorted(set(view.assignment))
    measured: dict[TriggerKind, tuple[float | None, float, str]] = {}

    # 1) Latency EWMA against L_max.
    measured[TriggerKind.LATENCY] = (env.latency_s, thresholds.latency_max_s, "")

    # 2) Utilisation of the nodes serving the plan (an unused node cannot be relieved by moving segments).
    util_node = max(plan_nodes, key=lambda n: env.nodes[n].utilization if n in env.nodes else -1.0)
    util = env.nodes[util_node].utilization if util_node in env.nodes else None
    measured[TriggerKind.UTILIZATION] = (util, thresholds.utilization_max, util_node)

    # 3) Minimum measured bandwidth over the links the plan actually uses.
    bandwidth: float | None = None
    subject = ""
    for a, b in active_links(view.assignment, view.source):
        link = env.link(a, b)
        if (
            link is not None
            and link.bandwidth_bps is not None
            and (bandwidth is None or link.bandwidth_bps < bandwidth)
        ):
            bandwidth, subject = link.bandwidth_bps, f"{min(a, b)}~{max(a, b)}"
    measured[TriggerKind.BANDWIDTH] = (bandwidth, thresholds.bandwidth_min_bps, subject)

    streaks = dict(previous.streaks)
    active = set(previous.active)
    firing: list[TriggerFiring] = []
    for kind, (value, threshold, subj) in measured.items():
        over = value is not None and (
            value < threshold if kind is TriggerKind.BANDWIDTH else value > threshold
        )
        streaks[kind] = streaks.get(kind, 0) + 1 if over else 0
        if streaks[kind] >= h.persist_ticks:
            active.add(kind)
        elif kind in active and value is not None and _released(kind, value, threshold, h):
            active.discard(kind)
        if kind in active:
            firing.append(TriggerFiring(kind, value if value is not None else float("nan"), threshold, subj))

    # 4) A privacy-high request waits and the plan would run a critical block on an untrusted node.
    exposed = privacy_exposure(view)
    if pending_privacy_high > 0 and exposed > 0:
        firing.append(
            TriggerFiring(TriggerKind.PRIVACY, float(exposed), 0.0, f"{pending_privacy_high} requests")
        )

    # 5) Node loss: a node of the plan missed its heartbeats or failed a step.
    lost = sorted(set(plan_nodes) & dead_nodes)
    if lost:
        firing.append(TriggerFiring(TriggerKind.NODE_LOSS, float(len(lost)), 0.0, ",".join(lost)))

    fired_now = frozenset(f.kind for f in firing) - previous.active
    state = TriggerState(streaks, frozenset(k for k in active if k in measured))
    return TriggerDecision(tuple(firing), fired_now, state)


def _released(kind: TriggerKind, value: float, threshold: float, h: Hysteresis) -> bool:
    if kind is TriggerKind.BANDWIDTH:
        return value >= threshold * (1 + h.release_fraction)
    if kind is TriggerKind.UTILIZATION:
        return value <= threshold - h.utilization_release
    return value <= threshold * (1 - h.release_fraction)
