"""The CP-SAT model of the chain: x[s,k,n] (unit k of source s on node n) with hop-flow variables.

Handles what shortest paths cannot: memory shared on a node, the max-type U term, the bottleneck
(throughput) objective, one-segment-per-node restrictions and min-change. Costs are floor-scaled to
integers so that (model optimum)/scale is a valid lower bound on the real-valued objective.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from edgesplit.orchestrator.planner.instance import Instance
from edgesplit.orchestrator.planner.plan import Objective

RANDOM_SEED = 20261123
"""CP-SAT's seed: fixed, so that one model always gives one plan among plans of equal objective."""

Sum = cp_model.LinearExpr.Sum
Weighted = cp_model.LinearExpr.WeightedSum


@dataclass(frozen=True)
class SearchOptions:
    """What the search must respect beyond the problem itself."""

    objective: Objective = "latency"
    one_segment_per_node: bool = False
    """EdgeShard/PipeEdge assumption: every node executes at most one contiguous segment."""
    source_revisit: bool = True
    """With ``one_segment_per_node``: the source may also run the last segment (a second one)."""
    first_on_source: bool = False
    """Pin the first block to the source (EdgeShard's latency script does)."""
    time_limit_s: float = 10.0
    workers: int = 1
    """CP-SAT search workers. One worker with a fixed seed is deterministic: among plans of equal objective
    the same input always gives the same plan. More workers race a portfolio of strategies and may return
    any of the tied plans (benchmarks/bench_cpsat.py: about as fast overall on 2 cores; CP-SAT's own
    deterministic interleaved mode was ~25x slower on small models)."""
    run_search_share: float = 0.7
    """Share of the time limit the run search may use; at 1.0 CP-SAT is skipped when it finds no proof."""


@dataclass(frozen=True)
class ModelOutcome:
    paths: tuple[tuple[int, ...], ...] | None
    proven: bool
    lower: float
    """Valid lower bound on the modelled objective, in real units (constants excluded)."""
    scaled_value: int | None = None


class ChainModel:
    """One CP-SAT model over the states and hops that survived fixing."""

    def __init__(
        self,
        inst: Instance,
        opts: SearchOptions,
        scale: float,
        states: np.ndarray,
        hops: list[list[np.ndarray]] | None,
        symmetric_groups: list[list[int]] | None = None,
    ) -> None:
        self.inst, self.opts, self.scale = inst, opts, scale
        m = self.model = cp_model.CpModel()
        n_src, n_units, _n_nodes = inst.n_sources, inst.n_units, inst.n_nodes
        self.inexact = False
        self.x: list[list[dict[int, cp_model.IntVar]]] = []
        terms: list[tuple[cp_model.IntVar, int]] = []
        self.stay: list[list[dict[int, cp_model.IntVar]]] = []
        link_terms: dict[tuple[int, int], list[tuple[cp_model.IntVar, int]]] = {}
        alpha_gamma = self._state_coefs()
        for s in range(n_src):
            xs = [
                {int(n): m.NewBoolVar(f"x{s}_{k}_{n}") for n in np.flatnonzero(states[s, k])}
                for k in range(n_units)
            ]
            for k, row in enumerate(xs):
                if not row:
                    m.AddBoolOr([])  # no node can take this unit: infeasible
                m.AddExactlyOne(row.values())
                for n, var in row.items():
                    terms.append((var, self._floor(alpha_gamma[s][k, n])))
            src = inst.source_nodes[s]
            for n, var in xs[0].items():
                if not np.isfinite(inst.entry_cost[s, n]):
                    m.Add(var == 0)  # no link from the source
                elif n != src:
                    self._add_edge_cost(terms, link_terms, var, s, src, n, inst.entry_cost[s, n], "in")
            for n, var in xs[-1].items():
                if not np.isfinite(inst.exit_cost[s, n]):
                    m.Add(var == 0)  # no link back to the source
                elif n != src:
                    self._add_edge_cost(terms, link_terms, var, s, n, src, inst.exit_cost[s, n], "out")
            stays: list[dict[int, cp_model.IntVar]] = []
            for k in range(n_units - 1):
                allowed = None if hops is None else hops[s][k]
                out_flow: dict[int, list[cp_model.IntVar]] = {i: [] for i in xs[k]}
                in_flow: dict[int, list[cp_model.IntVar]] = {j: [] for j in xs[k + 1]}
                stay_k: dict[int, cp_model.IntVar] = {}
                cost = inst.trans_cost(s, k)
                hop = inst.hop_ms(k)
                for i in xs[k]:
                    for j in xs[k + 1]:
                        if i == j:
                            var = stay_k[i] = m.NewBoolVar(f"st{s}_{k}_{i}")
                        elif np.isfinite(cost[i, j]) and (allowed is None or allowed[i, j]):
                            var = m.NewBoolVar(f"t{s}_{k}_{i}_{j}")
                            if opts.objective == "latency":
                                terms.append((var, self._floor(cost[i, j])))
                            else:
                                key = (min(i, j), max(i, j))
                                link_terms.setdefault(key, []).append((var, self._floor(hop[i, j])))
                        else:
                            continue
                        out_flow[i].append(var)
                        in_flow[j].append(var)
                for i, var in xs[k].items():
                    m.Add(Sum(out_flow[i]) == var)
                for j, var in xs[k + 1].items():
                    m.Add(Sum(in_flow[j]) == var)
                stays.append(stay_k)
            self.x.append(xs)
            self.stay.append(stays)
        self._add_memory()
        self._add_switch_cuts()
        self._add_restrictions(symmetric_groups or [])
        self.objective = self._objective(terms, link_terms)
        m.Minimize(self.objective)

    # -- building blocks -------------------------------------------------------------------------
    def _floor(self, value: float) -> int:
        return math.floor(value * self.scale)

    def _state_coefs(self) -> list[np.ndarray]:
        inst = self.inst
        if self.opts.objective == "latency":
            return [inst.state_cost[s] for s in range(inst.n_sources)]
        untrusted = ~inst.tables.trusted
        soft = inst.problem.weights.gamma * inst.privacy_blocks[:, None] * untrusted[None, :]
        return [soft for _ in range(inst.n_sources)]

    def _add_edge_cost(self, terms, link_terms, var, s, a, b, cost, kind) -> None:  # type: ignore[no-untyped-def]
        inst = self.inst
        if self.opts.objective == "latency":
            terms.append((var, self._floor(cost)))
            return
        nbytes = inst.problem.sources[s].input_bytes if kind == "in" else float(inst.out_bytes[-1])
        ms = inst.tables.hop_ms(a, b, nbytes)
        link_terms.setdefault((min(a, b), max(a, b)), []).append((var, self._floor(ms)))

    def _add_memory(self) -> None:
        inst, m = self.inst, self.model
        cap = inst.tables.mem_bytes
        kv = inst.demand_bytes - inst.param_bytes[None, :]
        if not np.all(np.equal(np.mod(kv, 1), 0)):
            self.inexact = True  # fractional KV bytes: ceil below is conservative, so no optimality claim
        kv_int = np.ceil(kv).astype(np.int64)
        for n in range(inst.n_nodes):
            worst = 0
            entries: list[tuple[int, int, cp_model.IntVar]] = []
            for s, xs in enumerate(self.x):
                for k, row in enumerate(xs):
                    if n in row:
                        entries.append((s, k, row[n]))
            units = {k for _, k, _ in entries}
            worst = sum(int(inst.param_bytes[k]) for k in units) + sum(
                int(kv_int[s, k]) for s, k, _ in entries
            )
            if worst <= cap[n]:
                continue
            if inst.n_sources == 1:
                m.Add(
                    Weighted(
                        [v for _, _, v in entries],
                        [int(inst.param_bytes[k]) + int(kv_int[0, k]) for _, k, _ in entries],
                    )
                    <= int(cap[n])
                )
                continue
            held: dict[int, cp_model.IntVar] = {}
            for k in units:
                y = held[k] = m.NewBoolVar(f"y{k}_{n}")
                for _, kk, v in entries:
                    if kk == k:
                        m.AddImplication(v, y)
            m.Add(
                Weighted(list(held.values()), [int(inst.param_bytes[k]) for k in held])
                + Weighted([v for _, _, v in entries], [int(kv_int[s, k]) for s, k, _ in entries])
                <= int(cap[n])
            )

    def _add_switch_cuts(self) -> None:
        """No node can run more units in a row than fit its memory: a longer window must contain a hop.

        Redundant for integer plans, but the LP relaxation otherwise splits the chain fractionally over
        several nodes and pays no hop at all, which leaves a wide gap when memory binds.
        """
        inst, m = self.inst, self.model
        cap = inst.tables.mem_bytes.astype(float)
        for s, stays in enumerate(self.stay):
            cum = np.concatenate([[0.0], np.cumsum(inst.demand_bytes[s])])
            for a in range(inst.n_units - 1):
                # Longest run from unit a that any allowed node can hold.
                longest = 0
                for n in range(inst.n_nodes):
                    if not inst.allowed[s, a, n]:
                        continue
                    r = int(np.searchsorted(cum, cum[a] + cap[n], side="right")) - 1 - a
                    bad = np.flatnonzero(~inst.allowed[s, a : a + max(r, 0), n])
                    r = min(r, int(bad[0])) if bad.size else r
                    longest = max(longest, r)
                if a + longest >= inst.n_units or longest < 1:
                    continue
                window = [v for k in range(a, a + longest) for v in stays[k].values()]
                if window:
                    m.Add(Sum(window) <= longest - 1)

    def _add_restrictions(self, groups: list[list[int]]) -> None:
        inst, m, opts = self.inst, self.model, self.opts
        if inst.n_sources != 1:
            return
        xs, stays = self.x[0], self.stay[0]
        src = inst.source_nodes[0]
        if opts.first_on_source:
            if src not in xs[0]:
                m.AddBoolOr([])
            else:
                m.Add(xs[0][src] == 1)
        if opts.one_segment_per_node:
            for n in range(inst.n_nodes):
                starts = [xs[k][n] for k in range(inst.n_units) if n in xs[k]]
                continues = [stays[k][n] for k in range(inst.n_units - 1) if n in stays[k]]
                if not starts:
                    continue
                limit: cp_model.LinearExprT = 1
                if n == src and opts.source_revisit and n in xs[-1] and n in xs[0]:
                    both = m.NewBoolVar("revisit")
                    m.AddImplication(both, xs[0][n])
                    m.AddImplication(both, xs[-1][n])
                    limit = 1 + both
                m.Add(Sum(starts) - Sum(continues) <= limit)
        for group in groups:
            prefixes = []
            for n in group:
                p_prev = None
                pref = []
                for k in range(inst.n_units):
                    p = m.NewBoolVar(f"p{k}_{n}")
                    x = xs[k].get(n)
                    parts = [p_prev] if p_prev is not None else []
                    if x is not None:
                        parts.append(x)
                        m.AddImplication(x, p)
                    if p_prev is not None:
                        m.AddImplication(p_prev, p)
                    m.Add(p <= sum(parts)) if parts else m.Add(p == 0)
                    pref.append(p)
                    p_prev = p
                prefixes.append(pref)
            for a, b in itertools.pairwise(prefixes):
                for pa, pb in zip(a, b, strict=True):
                    m.AddImplication(pb, pa)

    def _objective(self, terms, link_terms) -> cp_model.LinearExpr:  # type: ignore[no-untyped-def]
        inst, m = self.inst, self.model
        expr = Weighted([v for v, c in terms if c], [c for _, c in terms if c])
        w = inst.problem.weights
        if self.opts.objective == "latency":
            rates = [s.token_rate for s in inst.problem.sources]
            if w.beta > 0 and any(r > 0 for r in rates):
                bound = self._floor(
                    w.beta * (1.0 + sum(rates) / 1000 * float(inst.load_ms.sum(axis=0).max()))
                )
                u = m.NewIntVar(0, max(bound, 0) + 1, "U")
                for n in range(inst.n_nodes):
                    parts = [
                        self._floor(w.beta * inst.problem.sources[s].token_rate / 1000 * inst.load_ms[k, n])
                        * row[n]
                        for s, xs in enumerate(self.x)
                        for k, row in enumerate(xs)
                        if n in row
                    ]
                    m.Add(u >= self._floor(w.beta * float(inst.tables.util[n])) + Sum(parts))
                expr = expr + u
            return expr
        top = self._floor(float(inst.compute_ms.sum(axis=0).max()) * inst.n_sources)
        top = max(top, max((sum(c for _, c in v) for v in link_terms.values()), default=0))
        t = m.NewIntVar(0, top + 1, "T")
        for n in range(inst.n_nodes):
            parts = [
                self._floor(inst.compute_ms[k, n]) * row[n]
                for xs in self.x
                for k, row in enumerate(xs)
                if n in row
            ]
            if parts:
                m.Add(t >= Sum(parts))
        for v in link_terms.values():
            m.Add(t >= Weighted([var for var, _ in v], [c for _, c in v]))
        return expr + t

    # -- solving ---------------------------------------------------------------------------------
    def hint(self, paths: tuple[tuple[int, ...], ...]) -> None:
        self.model.ClearHints()
        for s, path in enumerate(paths):
            for k, row in enumerate(self.x[s]):
                for n, var in row.items():
                    self.model.AddHint(var, int(path[k] == n))

    def solve(self, time_limit_s: float) -> ModelOutcome:
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
        solver.parameters.num_workers = self.opts.workers
        solver.parameters.random_seed = RANDOM_SEED
        status = solver.Solve(self.model)
        if status == cp_model.INFEASIBLE:
            return ModelOutcome(None, True, math.inf)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return ModelOutcome(None, False, -math.inf)
        paths = tuple(
            tuple(next(n for n, v in row.items() if solver.Value(v)) for row in xs) for xs in self.x
        )
        # With fractional KV bytes rounded up, the model may exclude real plans: its bound proves nothing.
        lower = -math.inf if self.inexact else solver.BestObjectiveBound() / self.scale
        return ModelOutcome(
            paths, status == cp_model.OPTIMAL and not self.inexact, lower, int(solver.ObjectiveValue())
        )

    def cap_objective(self, limit: int) -> None:
        self.model.Add(self.objective <= limit)

    def minimize_moves(self, moved: np.ndarray) -> cp_model.LinearExpr:
        """Switch the objective to parameter bytes fetched; ``moved`` is (K, N) bytes per placement."""
        held: dict[tuple[int, int], list[cp_model.IntVar]] = {}
        for xs in self.x:
            for k, row in enumerate(xs):
                for n, v in row.items():
                    held.setdefault((k, n), []).append(v)
        parts = []
        for (k, n), vs in held.items():
            cost = int(moved[k, n])
            if not cost:
                continue
            if len(vs) == 1:
                parts.append(cost * vs[0])
            else:
                y = self.model.NewBoolVar(f"mv{k}_{n}")
                for v in vs:
                    self.model.AddImplication(v, y)
                parts.append(cost * y)
        expr = sum(parts) if parts else 0
        self.model.Minimize(expr)
        return expr
