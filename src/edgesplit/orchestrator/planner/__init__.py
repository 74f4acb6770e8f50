"""Split revision: the joint partition + placement optimiser (DESIGN §4.2). Pure Python + OR-Tools.

Knows nothing of torch, gRPC or the clock beyond timing itself. The orchestrator's API:

* ``parse_problem(mapping)`` / ``load_problem(path)`` → ``Problem`` (frozen, validated; every error is an
  ``InvalidProblemError`` naming the field). ``Problem(...)`` built from the dataclasses validates too.
* ``solve(problem, solver="auto", *, objective="latency", fixed_boundaries=None, current=None,
  held=None, min_change_epsilon=None, restrictions=None, time_limit_s=10.0) -> Plan``

  - ``solver``: ``dp`` (shortest path over (block, node); exact when Φ is additive — β = 0 or no token
    rate — and the path fits memory, otherwise it hands over to the exact search and says so in
    ``notes``), ``exact`` (the shortest path when it fits memory; for one source and an additive Φ, the
    run search: depth-first over maximal runs with exact per-node memory, pruned by a Lagrangian-priced
    relaxation in which each run must fit its node alone; otherwise, or when that search used up its
    share of the time, CP-SAT with memory, privacy, U, P, restrictions; when the model would not fit the
    time limit, CP-SAT on a shortlist and no proof),
    ``greedy`` (a walk plus local search, no claim), ``auto`` (exact up to 256 nodes; above, a shortest
    path over all nodes — a proof when it fits memory — else a walk over all nodes and a 0.5 s exact
    search over pruned candidates: sources, trusted nodes, the walk's and the path's nodes, the k best
    by speed, link to the source and memory; reported in ``plan.pruned``).
  - Ties: the shortest path and the run search prefer the lowest node index (the problem's node order)
    and then the earliest cut, so one input always gives one plan; CP-SAT runs one worker with a fixed
    seed, so it too returns the same plan of equal cost every time (possibly another one than the
    shortest path would); any search cut short by its time limit depends on the machine's speed.
  - ``time_limit_s`` bounds CP-SAT, the run search and the Lagrangian; shortest paths, the walk and
    model building come on top (about 1 s of CPU at 1024 nodes).
  - ``fixed_boundaries``: migration only — the cut points stay (``plan.segments`` keeps them even when two
    neighbours land on one node); only placement changes. The orchestrator asks this first.
  - ``current`` (per-block node ids of the running plan) and ``held`` (node id → blocks already cached
    there) with ``min_change_epsilon`` (relative, e.g. 0.05): among plans within (1 + ε) of the best Φ,
    return one that fetches the fewest parameter bytes (``plan.moved_bytes``).
  - ``objective``: ``"latency"`` minimises Φ = αL + βU + γP, the per-token latency of one request —
    use it for interactive serving and for the paper's Algorithm 1. ``"throughput"`` minimises the
    bottleneck stage time (max over nodes of per-token busy time, over links of per-token transfer time,
    rtt/2 included, summed over every hop using the link) plus γP — use it when many concurrent
    sessions are pipelined and tokens/s matters more than one request's latency.
  - ``restrictions``: ``SearchOptions(one_segment_per_node=True, source_revisit=True,
    first_on_source=False)`` reproduces EdgeShard/PipeEdge's formulation (regression fixtures).

* ``evaluate(problem, assignment) -> Cost``: the real-valued §4.2 cost and feasibility of any assignment.

``plan.optimal`` is true only when the plan's real-valued objective meets a proven lower bound to 1e-6
relative (shortest path, Lagrangian bound, or CP-SAT proof over floor-scaled integer costs).

Several sources (``Problem.sources``): each source gets its own chain; L is their token-rate-weighted
mean; ρ adds every source's load; a block's weights on a node are loaded once whatever number of
sources use it, KV memory is per source. ``plan.assignment``/``segments`` are the first source's,
``plan.sources`` has all.
"""

from edgesplit.orchestrator.planner.cost import Cost, evaluate
from edgesplit.orchestrator.planner.cpsat import SearchOptions
from edgesplit.orchestrator.planner.plan import Plan, Segment, SourcePlan, segments_of
from edgesplit.orchestrator.planner.problem import (
    Block,
    Link,
    Node,
    Problem,
    ProblemFile,
    Source,
    Weights,
    load_problem,
    parse_problem,
)
from edgesplit.orchestrator.planner.solve import SOLVERS, objective_value, solve

__all__ = [
    "SOLVERS",
    "Block",
    "Cost",
    "Link",
    "Node",
    "Plan",
    "Problem",
    "ProblemFile",
    "SearchOptions",
    "Segment",
    "Source",
    "SourcePlan",
    "Weights",
    "evaluate",
    "load_problem",
    "objective_value",
    "parse_problem",
    "segments_of",
    "solve",
]
