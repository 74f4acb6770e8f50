"""The adaptive controller's settings, what it takes in each cycle, and its lifecycle states.

Plain values shared by the controller, its configuration (cluster file ``orchestrator:`` section),
the simulator and the tests; the decision logic itself is in ``controller.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol

from edgesplit.orchestrator.events import DecisionEvent
from edgesplit.orchestrator.move_cost import MoveSettings
from edgesplit.orchestrator.profiler import (
    LatencyObservation,
    LinkObservation,
    NodeTelemetry,
    ProfilerSettings,
    WorkloadObservation,
)
from edgesplit.orchestrator.triggers import Hysteresis, Thresholds


class EventSink(Protocol):
    def append(self, event: DecisionEvent) -> int: ...

    def update(self, event: DecisionEvent) -> None: ...


class ControllerState(Enum):
    CREATED = "created"  # no plan yet: bootstrap() or adopt() next
    RUNNING = "running"  # monitoring on a committed plan
    ROLLING_OUT = "rolling_out"  # a new epoch is being prepared/committed; no planning meanwhile
    STOPPED = "stopped"  # terminal


ALLOWED_TRANSITIONS = {
    ControllerState.CREATED: {ControllerState.RUNNING, ControllerState.ROLLING_OUT, ControllerState.STOPPED},
    ControllerState.RUNNING: {ControllerState.ROLLING_OUT, ControllerState.STOPPED},
    ControllerState.ROLLING_OUT: {ControllerState.RUNNING, ControllerState.STOPPED},
    ControllerState.STOPPED: set(),
}


class IllegalTransitionError(RuntimeError):
    """A controller method was called in a state where it makes no sense (a caller bug)."""


@dataclass(frozen=True)
class ControllerSettings:
    thresholds: Thresholds = Thresholds()
    hysteresis: Hysteresis = Hysteresis()
    move: MoveSettings = MoveSettings()
    profiler: ProfilerSettings = ProfilerSettings()
    min_relative_gain: float = 0.10
    """A non-urgent change must cut predicted latency by this fraction, or fix a missed target."""
    improvement_interval_s: float | None = 120.0
    """With no trigger active, look for a clearly better plan this often (None: only on triggers, as
    in the paper's Algorithm 1). This is how a recovered node wins its segments back — after T_cool,
    and only if the gain beats ``improvement_min_gain`` and the move's cost."""
    improvement_min_gain: float = 0.20
    replan_interval_s: float = 10.0
    """While a trigger stays active without a change, re-plan at most this often."""
    heartbeat_timeout_s: float = 5.0
    failed_node_exclusion_s: float = 60.0
    """A node that failed a prepare is left out of plans this long (unless it is the only way)."""
    settle_s: float = 5.0
    """After a commit, wait this long before recording the measured latency against the prediction."""
    confirm_s: float = 5.0
    """A change asked for by the latency trigger alone (the noisiest figure: any busy moment moves it)
    is made only if the same plan is chosen again at least this long later, from fresh measurements."""
    privacy_default: Literal["high", "none"] = "high"
    """Privacy mode of the problem when no privacy-high request is pending: "high" keeps critical blocks
    on trusted nodes always; "none" lets them move until a privacy-high request arrives."""


@dataclass(frozen=True)
class MonitoringInputs:
    """Everything that arrived since the last cycle."""

    reports: Sequence[NodeTelemetry] = ()
    links: Sequence[LinkObservation] = ()
    latencies: Sequence[LatencyObservation] = ()
    workload: WorkloadObservation | None = None
    pending_privacy_high: int = 0
    failed_nodes: frozenset[str] = frozenset()
    """Nodes the gateway saw fail a step (faster than waiting for missed heartbeats)."""
