"""Exact search for one source and an additive objective: segment relaxation + Lagrangian + branching.

The relaxation drops only the *cumulative* memory limit: every maximal run of units on one node must fit
that node alone, so the chain cannot spread fractionally over nodes without paying its hops (the per-unit
relaxation's weakness). Memory across a node's several runs is priced by Lagrangian multipliers, and
violations are branched on (unit k on node n: forbidden | forced). Pure numpy, deterministic: ties go to
the lowest node index, then the earliest cut.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from edgesplit.orchestrator.planner.dp import fits
from edgesplit.orchestrator.planner.instance import Instance

FIT_SLACK = 1e-9
"""Relative slack on a run's memory test, so float sums never exclude a plan that fits."""


@dataclass(frozen=True)
class BranchResult:
    path: tuple[int, ...] | None
    value: float
    """Cost of ``path`` by the instance tables (inf when none)."""
    lower: float
    """Proven lower bound on every feasible path's cost (= value when proven)."""
    proven: bool
    nodes_explored: int


@dataclass(eq=False)
class _Relaxation:
    """Tables shared by every branch: prefix sums of cost and memory per node, hop matrices."""

    inst: Instance
    cost: np.ndarray  # (K, N) state cost, inf where not allowed
    demand: np.ndarray  # (K,)
    cap: np.ndarray  # (N,)
    hops: list[np.ndarray]  # K-1 × (N, N) with inf on the diagonal (a new run changes node)
    entry: np.ndarray
    exit: np.ndarray
    cum_demand: np.ndarray = field(init=False)  # (K+1,)

    def __post_init__(self) -> None:
        self.cum_demand = np.concatenate([[0.0], np.cumsum(self.demand)])

    @classmethod
    def of(cls, inst: Instance) -> _Relaxation:
        hops = []
        for k in range(inst.n_units - 1):
            h = np.array(inst.trans_cost(0, k), dtype=float, copy=True)
            np.fill_diagonal(h, np.inf)
            hops.append(h)
        return cls(
            inst,
            np.asarray(inst.state_cost[0], dtype=float),
            np.asarray(inst.demand_bytes[0], dtype=float),
            inst.tables.mem_bytes.astype(float),
            hops,
            np.asarray(inst.entry_cost[0], dtype=float),
            np.asarray(inst.exit_cost[0], dtype=float),
        )

    def first_start(self, allowed: np.ndarray) -> np.ndarray:
        """(K+1, N): for a run ending at b (exclusive) on n, the smallest start a that is valid.

        A run [a, b) on n is valid when every unit in it is allowed on n and it fits n's memory alone.
        """
        k_units, n_nodes = allowed.shape
        out = np.zeros((k_units + 1, n_nodes), dtype=np.int64)
        # memory: smallest a with cum[b] - cum[a] <= cap
        limit = self.cap * (1 + FIT_SLACK)
        for b in range(1, k_units + 1):
            out[b] = np.searchsorted(self.cum_demand, self.cum_demand[b] - limit, side="left")
        # allowed: a must be after the last disallowed unit before b
        last_bad = np.full(n_nodes, -1, dtype=np.int64)
        for b in range(1, k_units + 1):
            last_bad = np.where(allowed[b - 1], last_bad, b - 1)
            out[b] = np.maximum(out[b], last_bad + 1)
        return out

    def windows(self, starts: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Per run end b: the first candidate start over all nodes and the (rows, N) validity mask."""
        out = [(0, np.zeros((0, starts.shape[1]), dtype=bool))]
        for b in range(1, starts.shape[0]):
            lo = int(min(starts[b].min(), b - 1))
            rows = np.arange(lo, b)[:, None]
            out.append((lo, rows >= starts[b][None, :]))
        return out

    def solve(
        self, allowed: np.ndarray, lam: np.ndarray, windows: list[tuple[int, np.ndarray]]
    ) -> tuple[float, tuple[int, ...]]:
        """Cheapest chain of valid runs under per-byte prices ``lam`` (the −λ·cap term excluded)."""
        k_units, n_nodes = allowed.shape
        unit = np.where(allowed, self.cost, np.inf) + lam[None, :] * self.demand[:, None]
        with np.errstate(invalid="ignore"):
            finite = np.where(np.isfinite(unit), unit, 0.0)
        prefix = np.vstack([np.zeros(n_nodes), np.cumsum(finite, axis=0)])  # (K+1, N)
        enter = np.empty((k_units, n_nodes))  # cost up to and including the hop into a run at a on n
        enter_from = np.full((k_units, n_nodes), -1, dtype=np.int64)
        run_end = np.empty((k_units + 1, n_nodes))  # F[b][n]
        run_start = np.zeros((k_units + 1, n_nodes), dtype=np.int64)
        enter[0] = self.entry
        h = np.empty((k_units, n_nodes))  # enter[a] - prefix[a]
        h[0] = enter[0] - prefix[0]
        cols = np.arange(n_nodes)
        for b in range(1, k_units + 1):
            lo, mask = windows[b]
            window = np.where(mask, h[lo:b], np.inf)
            a = np.argmin(window, axis=0)
            run_end[b] = window[a, cols] + prefix[b]
            run_start[b] = a + lo
            if b < k_units:
                total = run_end[b][:, None] + self.hops[b - 1]
                m = np.argmin(total, axis=0)
                enter[b] = total[m, cols]
                enter_from[b] = m
                h[b] = enter[b] - prefix[b]
        final = run_end[k_units] + self.exit
        last = int(np.argmin(final))
        value = float(final[last])
        if not math.isfinite(value):
            return math.inf, ()
        path = [0] * k_units
        b, n = k_units, last
        while b > 0:
            a = int(run_start[b, n])
            path[a:b] = [n] * (b - a)
            if a == 0:
                break
            n, b = int(enter_from[a, n]), a
        return value, tuple(path)


def _usage(relax: _Relaxation, path: tuple[int, ...]) -> np.ndarray:
    return np.bincount(np.asarray(path), weights=relax.demand, minlength=len(relax.cap))


def _path_value(relax: _Relaxation, path: tuple[int, ...]) -> float:
    total = float(relax.entry[path[0]] + relax.exit[path[-1]])
    for k, n in enumerate(path):
        total += float(relax.cost[k, n])
        if k + 1 < len(path) and path[k + 1] != n:
            total += float(relax.hops[k][n, path[k + 1]])
    return total


def _lagrangian(
    relax: _Relaxation,
    allowed: np.ndarray,
    lam: np.ndarray,
    upper: float,
    iterations: int,
    deadline: float,
) -> tuple[float, np.ndarray, tuple[int, ...], list[tuple[int, ...]]]:
    """Best bound over a few subgradient steps from ``lam``; its path; memory-feasible paths met."""
    windows = relax.windows(relax.first_start(allowed))
    best_bound, best_lam, best_path = -math.inf, lam, ()
    feasible: list[tuple[int, ...]] = []
    step_factor, stall = 1.0, 0
    for _ in range(iterations):
        value, path = relax.solve(allowed, lam, windows)
        if not path:
            return math.inf, lam, (), feasible
        bound = value - float(lam @ relax.cap)
        if bound > best_bound + 1e-12 * abs(bound):
            best_bound, best_lam, best_path, stall = bound, lam.copy(), path, 0
        else:
            stall += 1
            if stall >= 2:
                step_factor, stall = step_factor / 2, 0
        grad = _usage(relax, path) - relax.cap
        if np.all(grad <= 0):
            feasible.append(path)
            upper = min(upper, _path_value(relax, path))
            if np.all((lam == 0) | (grad >= -FIT_SLACK * relax.cap)):
                break  # complementary slackness: optimal for this branch
        if best_bound >= upper * (1 - 1e-12) or time.perf_counter() > deadline or step_factor < 1e-3:
            break
        grad[(lam <= 0) & (grad < 0)] = 0.0
        norm = float(grad @ grad)
        if norm == 0:
            break
        target = upper if math.isfinite(upper) else abs(bound) * 1.05 + 1.0
        lam = np.maximum(0.0, lam + step_factor * max(target - bound, 1e-9 * abs(target)) / norm * grad)
    return best_bound, best_lam, best_path, feasible


def suffix_bounds(relax: _Relaxation, allowed: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """(K+1, N): cheapest priced relaxed suffix after a run on n that ends at unit b (exclusive)."""
    k_units, n_nodes = allowed.shape
    starts = relax.first_start(allowed)
    unit = np.where(allowed, relax.cost, np.inf) + lam[None, :] * relax.demand[:, None]
    prefix = np.vstack([np.zeros(n_nodes), np.cumsum(np.where(np.isfinite(unit), unit, 0.0), axis=0)])
    leave = np.full((k_units + 1, n_nodes), np.inf)
    leave[k_units] = relax.exit
    for a in range(k_units - 1, -1, -1):
        # a run [a, b) on n is valid when a >= starts[b, n]
        valid = starts[a + 1 :] <= a
        cand = np.where(valid, leave[a + 1 :] + prefix[a + 1 :], np.inf)
        start = cand.min(axis=0) - prefix[a]
        if a > 0:
            leave[a] = (relax.hops[a - 1] + start[None, :]).min(axis=1)
    return leave


@dataclass(eq=False)
class _Search:
    """Depth-first search over maximal runs with exact cumulative memory and relaxation bounds."""

    relax: _Relaxation
    allowed: np.ndarray
    lam: np.ndarray
    suffix_lam: np.ndarray  # (K+1, N) priced relaxed cost after a run ending at b on n
    suffix_zero: np.ndarray  # (K+1, N) unpriced relaxed cost after a run ending at b on n
    deadline: float
    upper: float = math.inf
    best: tuple[int, ...] | None = None
    expanded: int = 0
    timed_out: bool = False
    seen: dict[tuple[int, int, bytes], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        relax = self.relax
        k_units, n_nodes = self.allowed.shape
        unit = np.where(self.allowed, relax.cost, 0.0)
        self.prefix = np.vstack([np.zeros(n_nodes), np.cumsum(unit, axis=0)])
        bad = np.full((k_units + 1, n_nodes), k_units, dtype=np.int64)
        for k in range(k_units - 1, -1, -1):
            bad[k] = np.where(self.allowed[k], bad[k + 1], k)
        self.first_bad = bad
        self.cap = relax.cap * (1 + FIT_SLACK)
        per_node = relax.cap.max()
        longest = (
            int(np.searchsorted(np.sort(relax.demand).cumsum(), per_node * (1 + FIT_SLACK), side="right")) + 1
        )
        self.window = max(1, min(k_units, longest))

    def limit(self) -> float:
        """Partial plans bounded at or above this cannot beat the incumbent."""
        if not math.isfinite(self.upper):
            return math.inf
        return self.upper - 1e-12 * abs(self.upper) - 1e-12

    def run(self, path: list[int], a: int, prev: int, cost: float, used: np.ndarray) -> None:
        relax, k_units = self.relax, self.allowed.shape[0]
        # The rest of a plan depends only on where it stands, on which node, and what memory is used.
        key = (a, prev, used.tobytes())
        if self.seen.get(key, math.inf) <= cost:
            return
        self.seen[key] = cost
        self.expanded += 1
        if self.expanded % 64 == 0 and time.perf_counter() > self.deadline:
            self.timed_out = True
        if self.timed_out:
            return
        ends = np.arange(a + 1, min(k_units, a + self.window) + 1)
        need = relax.cum_demand[ends] - relax.cum_demand[a]  # (L,)
        ok = (ends[:, None] <= self.first_bad[a][None, :]) & (need[:, None] <= (self.cap - used)[None, :])
        if prev >= 0:
            ok[:, prev] = False
            hop = relax.hops[a - 1][prev]
        else:
            hop = relax.entry
        inc = hop[None, :] + self.prefix[ends] - self.prefix[a][None, :]
        total = cost + inc
        slack = float(self.lam @ (relax.cap - used))
        priced = self.suffix_lam[ends] - slack + self.lam[None, :] * need[:, None]
        bound = total + np.maximum(self.suffix_zero[ends], priced)
        bound = np.where(ok & np.isfinite(inc), bound, np.inf)
        rows, cols = np.nonzero(bound < self.limit())
        if rows.size == 0:
            return
        order = np.lexsort((rows, cols, bound[rows, cols]))
        for i in order:
            r, n = int(rows[i]), int(cols[i])
            if bound[r, n] >= self.limit():
                continue
            b = int(ends[r])
            path.extend([n] * (b - a))
            if b == k_units:
                final = float(total[r, n] + relax.exit[n])
                if final < self.upper and fits(relax.inst, [tuple(path)]):
                    self.upper, self.best = final, tuple(path)
            else:
                after = used.copy()
                after[n] += need[r]
                self.run(path, b, n, float(total[r, n]), after)
            del path[a:]
            if self.timed_out:
                return


def run_search(
    inst: Instance,
    incumbent: tuple[int, ...] | None,
    deadline: float,
    lagrange_steps: int = 12,
) -> BranchResult:
    """Optimal single-source chain under cumulative memory (additive objective), or the best in time."""
    relax = _Relaxation.of(inst)
    allowed = inst.allowed[0].copy()
    upper, best = math.inf, None
    if incumbent is not None and fits(inst, [incumbent]):
        best, upper = incumbent, _path_value(relax, incumbent)
    lam = np.zeros(inst.n_nodes)
    root = -math.inf
    if lagrange_steps > 0:
        root, lam, _path, feasible = _lagrangian(relax, allowed, lam, upper, lagrange_steps, deadline)
        for cand in feasible:
            v = _path_value(relax, cand)
            if v < upper and fits(inst, [cand]):
                best, upper = cand, v
    if root == math.inf:  # not even the relaxation has a chain
        return BranchResult(None, math.inf, math.inf, True, 1)
    suffix_lam = suffix_bounds(relax, allowed, lam)
    suffix_zero = suffix_lam if not lam.any() else suffix_bounds(relax, allowed, np.zeros_like(lam))
    search = _Search(relax, allowed, lam, suffix_lam, suffix_zero, deadline, upper, best)
    search.run([], 0, -1, 0.0, np.zeros(inst.n_nodes))
    value = math.inf if search.best is None else _path_value(relax, search.best)
    if search.timed_out:
        return BranchResult(search.best, value, min(root, value), False, search.expanded)
    return BranchResult(search.best, value, value, True, search.expanded)
