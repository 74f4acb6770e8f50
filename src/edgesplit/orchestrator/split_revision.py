"""Split revision (SR) as the controller calls it: the planner package behind the controller's two callables.

Converts at the edge between the controller's §4.2 problem dicts / seconds and the planner's
``Problem`` / milliseconds; decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgesplit.errors import InfeasibleError
from edgesplit.orchestrator.candidates import Prediction, Problem
from edgesplit.orchestrator.planner import evaluate, parse_problem, solve


@dataclass(frozen=True)
class SplitRevision:
    """``plan`` and ``evaluate`` in the shapes ``AdaptiveController`` takes (``PlanFn``, ``EvaluateFn``)."""

    solver: str = "auto"
    min_change_epsilon: float | None = 0.02
    """Among plans within this relative Φ of the best, prefer the one that fetches the fewest bytes."""
    time_limit_s: float = 5.0

    def plan(
        self,
        problem: Problem,
        fixed_boundaries: tuple[int, ...] | None,
        current: tuple[str, ...],
        held: Mapping[str, frozenset[int]],
    ) -> tuple[str, ...] | None:
        parsed = parse_problem(problem)
        live = set(parsed.node_ids)
        # The planner's min-change mode only understands a current plan it can still run.
        keep = current if current and set(current) <= live else None
        try:
            result = solve(
                parsed,
                self.solver,
                fixed_boundaries=fixed_boundaries,
                current=keep,
                held={n: sorted(b) for n, b in held.items() if n in live} or None,
                min_change_epsilon=self.min_change_epsilon if keep is not None else None,
                time_limit_s=self.time_limit_s,
            )
        except InfeasibleError:
            return None
        return tuple(result.assignment)

    def evaluate(self, problem: Problem, assignment: tuple[str, ...]) -> Prediction:
        cost = evaluate(parse_problem(problem), assignment)
        return Prediction(
            cost.latency_ms / 1e3,
            plan_utilization(problem, assignment),
            cost.privacy,
            cost.phi,
            cost.feasible,
        )


def plan_utilization(problem: Problem, assignment: tuple[str, ...]) -> float:
    """max ρ_n (§4.2) over the nodes the plan uses — the planner's U maxes over every node, and a
    loaded node that serves nothing would make every plan look like it misses U_max."""
    nodes = {str(n["id"]): n for n in problem["nodes"]}
    rate_per_ms = float(problem.get("token_rate", 0.0)) / 1000
    load: dict[str, float] = {}
    for block, node_id in zip(problem["blocks"], assignment, strict=True):
        load[node_id] = load.get(node_id, 0.0) + float(block["work_ms"]) / float(nodes[node_id]["speed"])
    return max(float(nodes[n].get("util", 0.0)) + rate_per_ms * work for n, work in sorted(load.items()))
