"""Candidate plans and the guards a change must pass: the split-revision interface, net-benefit test.

Pure: predictions in, judged ``CandidateRecord``s out. The controller decides when to ask; this
module decides whether an answer is worth moving for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from edgesplit.orchestrator.events import CandidateKind, CandidateRecord
from edgesplit.orchestrator.move_cost import MoveSettings, move_cost, net_benefit
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import EnvironmentState
from edgesplit.orchestrator.triggers import Thresholds

Problem = dict[str, Any]
"""A §4.2 planner problem as its JSON dict (what ``problem_builder.build_problem`` returns)."""

ACCEPTED = "accepted"


@dataclass(frozen=True)
class Prediction:
    """The cost model's view of one assignment under E(t) (DESIGN §4.2, in seconds)."""

    latency_s: float
    utilization: float
    privacy: int
    phi: float
    feasible: bool


class PlanFn(Protocol):
    """The split-revision call: best assignment, or None when infeasible. ``fixed_boundaries`` pins
    the cut points (migration only); ``current`` and ``held`` (node → blocks it already holds, loaded
    or on disk) let the planner prefer, among near-equal plans, the one that moves the fewest bytes."""

    def __call__(
        self,
        problem: Problem,
        fixed_boundaries: tuple[int, ...] | None,
        current: tuple[str, ...],
        held: Mapping[str, frozenset[int]],
    ) -> tuple[str, ...] | None: ...


EvaluateFn = Callable[[Problem, tuple[str, ...]], Prediction]


def predicted(
    kind: CandidateKind, assignment: tuple[str, ...], pred: Prediction, thresholds: Thresholds
) -> CandidateRecord:
    """A candidate with its predictions; it meets the targets if feasible and within L_max and U_max."""
    meets = (
        pred.feasible
        and pred.latency_s <= thresholds.latency_max_s
        and pred.utilization <= thresholds.utilization_max
    )
    return CandidateRecord(kind, assignment, pred.feasible, pred.latency_s, pred.utilization, meets)


@dataclass(frozen=True)
class Guard:
    """Judges candidates against the current plan. ``urgent`` (privacy, node loss) skips the gain test."""

    blocks: Sequence[BlockCost]
    current: tuple[str, ...]
    move: MoveSettings
    urgent: bool
    min_gain: float
    """Minimum relative latency cut for a non-urgent change that does not fix a missed target."""

    def judge(
        self, cand: CandidateRecord, keep: CandidateRecord, env: EnvironmentState, problem: Problem
    ) -> CandidateRecord:
        """``cand`` with its move cost, gain and a ``note``: ``"accepted"`` or why not."""
        if not cand.feasible:
            return replace(cand, note="infeasible")
        if cand.assignment == self.current:
            return replace(cand, note="same as the current plan")
        speed = {str(n["id"]): float(n["speed"]) for n in problem["nodes"]}
        cost = move_cost(env, self.blocks, self.current, cand.assignment, self.move, speed)
        moved = replace(cand, move_bytes=cost.download_bytes + cost.load_bytes, move_s=cost.move_s)
        if self.urgent or not keep.feasible:
            return replace(moved, cost_s=cost.reprefill_s, note=ACCEPTED)
        assert keep.predicted_latency_s is not None and cand.predicted_latency_s is not None
        benefit = net_benefit(
            keep.predicted_latency_s, cand.predicted_latency_s, env.tokens_per_s, cost, self.move
        )
        moved = replace(moved, gain_s=benefit.gain_s, cost_s=benefit.cost_s)
        base = keep.predicted_latency_s
        relative = 1 - cand.predicted_latency_s / base if base > 0 else 0.0
        fixes_target = cand.meets_targets and not keep.meets_targets
        if relative < self.min_gain and not fixes_target:
            return replace(moved, note=f"gain {relative:.1%} below {self.min_gain:.0%}")
        if not benefit.pays:
            return replace(
                moved,
                note=f"move does not pay: gain {benefit.gain_s:.2f} s < cost {benefit.cost_s:.2f} s "
                f"(moving takes {cost.move_s:.1f} s of a {self.move.horizon_s:.0f} s horizon)",
            )
        return replace(moved, note=ACCEPTED)


def choose(judged: Sequence[CandidateRecord]) -> CandidateRecord | None:
    """Migration first (paper §3.3): ``judged`` is in the order asked (migrate, then re-split), so the
    first accepted one that meets the targets wins; if none does (urgent cases), the lowest latency."""
    accepted = [c for c in judged if c.note == ACCEPTED]
    return next((c for c in accepted if c.meets_targets), None) or min(
        accepted, key=lambda c: c.predicted_latency_s or math.inf, default=None
    )
