"""The gateway's view of the committed plan: which route a request's steps travel, fenced by epoch.

Owns the current plan and the privacy check per request; never talks to nodes. A ``privacy: high``
request whose committed chain would cross an untrusted node waits (bounded) for a plan that keeps its
critical blocks on trusted nodes; meanwhile it is counted in ``privacy_high_waiting``, which the
orchestrator reads as its privacy trigger. It is never served over the violating chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgesplit.errors import NodeUnavailableError, PlanRejectedError, PrivacyViolationError
from edgesplit.transport.base import Hop, Route


class WaitingCounter(Protocol):
    """Where waiting privacy-high requests are counted (the gateway's observations)."""

    privacy_high_waiting: int
    privacy_high_last_s: float
    """Monotonic time a privacy-high request last asked for a route (it still runs, or just ran)."""


@dataclass(frozen=True)
class CommittedPlan:
    """A plan the orchestrator committed: its route and what it predicted (for GET /v1/plan)."""

    route: Route
    cost: dict[str, float] = field(default_factory=dict)
    solver: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "epoch": self.route.epoch,
            "segments": [
                {"node": h.node_id, "address": h.address, "start": h.start, "end": h.end}
                for h in self.route.hops
            ],
            "cost": self.cost,
            "solver": self.solver,
        }


class RouteBook:
    """Holds the last committed plan; hands each step the route it must use.

    ``privacy_blocks`` are the privacy-critical block indices; a ``privacy: high`` request only runs
    on a route that keeps them on ``trusted_nodes``.
    """

    def __init__(
        self,
        trusted_nodes: frozenset[str],
        privacy_blocks: frozenset[int],
        privacy_wait_s: float = 0.0,
    ) -> None:
        self.trusted_nodes = trusted_nodes
        self.privacy_blocks = privacy_blocks
        self.privacy_wait_s = privacy_wait_s
        self._plan: CommittedPlan | None = None
        self._changed = asyncio.Event()

    @property
    def plan(self) -> CommittedPlan | None:
        return self._plan

    def commit(self, plan: CommittedPlan) -> None:
        """Switch new steps to ``plan``; epochs only move forward."""
        current = self._plan.route.epoch if self._plan else 0
        if plan.route.epoch <= current:
            raise PlanRejectedError(
                f"plan epoch {plan.route.epoch} is not newer than the committed epoch {current}"
            )
        _check_covers(plan.route)
        self._plan = plan
        self._changed.set()
        self._changed = asyncio.Event()

    def route_for(self, privacy_high: bool) -> Route:
        """The route for one step; raises when none is committed or privacy cannot be kept."""
        if self._plan is None:
            raise NodeUnavailableError("no plan committed yet: the orchestrator has not deployed the model")
        route = self._plan.route
        if privacy_high:
            leaks = self.untrusted_privacy_hops(route)
            if leaks:
                raise PrivacyViolationError(
                    f"the committed plan (epoch {route.epoch}) runs privacy-critical blocks on untrusted "
                    f"node(s) {', '.join(sorted(leaks))}; retry with privacy 'none' or wait for a new plan"
                )
        return route

    async def wait_route(self, privacy_high: bool, deadline: float, waiting: WaitingCounter) -> Route:
        """``route_for``, except that a privacy-high request on a leaking plan waits for a plan that
        keeps its critical blocks trusted — up to ``privacy_wait_s`` and the monotonic ``deadline``."""
        if privacy_high:
            waiting.privacy_high_last_s = time.monotonic()
        if not privacy_high or self._private():
            return self.route_for(privacy_high)
        until = min(deadline, time.monotonic() + self.privacy_wait_s)
        waiting.privacy_high_waiting += 1
        try:
            while not self._private():
                left = until - time.monotonic()
                if left <= 0:
                    break
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
        finally:
            waiting.privacy_high_waiting -= 1
        return self.route_for(privacy_high)

    def _private(self) -> bool:
        """No plan yet counts as private here: ``route_for`` reports the missing plan itself."""
        return self._plan is None or not self.untrusted_privacy_hops(self._plan.route)

    def untrusted_privacy_hops(self, route: Route) -> set[str]:
        return {
            h.node_id
            for h in route.hops
            if h.node_id not in self.trusted_nodes and any(h.start <= b < h.end for b in self.privacy_blocks)
        }


def _check_covers(route: Route) -> None:
    """A route must cover blocks 0:B in order with no gap or overlap."""
    if not route.hops:
        raise PlanRejectedError("a plan needs at least one segment")
    expected = 0
    for hop in route.hops:
        if hop.start != expected or hop.end <= hop.start:
            raise PlanRejectedError(
                f"segment {hop.start}:{hop.end} on {hop.node_id} does not continue at block {expected}"
            )
        expected = hop.end


def route_from_segments(epoch: int, segments: list[tuple[str, str, int, int]]) -> Route:
    """Build a route from ``(node_id, address, start, end)`` tuples in chain order."""
    return Route(epoch=epoch, hops=tuple(Hop(n, a, s, e) for n, a, s, e in segments))
