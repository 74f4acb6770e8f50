"""Lower bounds and variable fixing for the exact solver: Lagrangian shortest paths over memory.

Pure numpy. A bound here is only ever used to discard (unit, node) states and hops that cannot be
part of any plan cheaper than a known feasible one, so the CP-SAT model stays small and exact.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgesplit.orchestrator.planner.dp import fits, memory_use, shortest_path
from edgesplit.orchestrator.planner.instance import Instance


@dataclass(frozen=True, eq=False)
class Bound:
    """A Lagrangian bound for one source: LB = path(λ) − λ·capacity (+ constants the caller adds)."""

    lower: float
    multipliers: np.ndarray  # (N,) λ per byte of memory
    forward: np.ndarray  # (K, N) at the best λ
    backward: np.ndarray  # (K, N)
    extra: np.ndarray  # (K, N) λ_n · demand_k
    feasible_paths: tuple[tuple[int, ...], ...]
    """Paths met along the way that satisfy memory (candidate upper bounds)."""


def path_cost(inst: Instance, s: int, path: tuple[int, ...]) -> float:
    """Φ-unit cost of one source's path by the instance tables (the additive part: α·L + γ·P)."""
    total = float(inst.entry_cost[s, path[0]] + inst.exit_cost[s, path[-1]])
    for k, n in enumerate(path):
        total += float(inst.state_cost[s, k, n])
        if k + 1 < len(path):
            total += float(inst.trans_cost(s, k)[n, path[k + 1]])
    return total


def lagrangian(
    inst: Instance, upper: float | None, iterations: int = 40, deadline: float = math.inf
) -> Bound:
    """Subgradient ascent on memory multipliers for the single-source additive objective.

    Stops early at ``deadline`` (a ``time.perf_counter`` value); any λ ≥ 0 gives a valid bound.
    """
    demand = inst.demand_bytes[0]
    cap = inst.tables.mem_bytes.astype(float)
    lam = np.zeros(inst.n_nodes)
    best: tuple[float, np.ndarray] | None = None
    feasible: list[tuple[int, ...]] = []
    step_factor = 1.0
    stall = 0
    for _ in range(iterations):
        if time.perf_counter() > deadline:
            break
        extra = lam[None, :] * demand[:, None]
        res = shortest_path(inst, 0, extra)
        if not res.nodes:
            break
        value = res.value - float(lam @ cap)
        if best is None or value > best[0] + 1e-12 * abs(value):
            best, stall = (value, lam.copy()), 0
        else:
            stall += 1
            if stall >= 3:
                step_factor, stall = step_factor / 2, 0
        if fits(inst, [res.nodes]):
            feasible.append(res.nodes)
            real = path_cost(inst, 0, res.nodes)
            upper = real if upper is None else min(upper, real)
        grad = memory_use(inst, [res.nodes]) - cap
        if np.all(grad <= 0) and np.all((lam == 0) | (grad == 0)):
            break  # complementary slackness: λ is optimal for this relaxation
        grad[(lam <= 0) & (grad < 0)] = 0.0  # projected: slack nodes at λ = 0 must not shrink the step
        target = upper if upper is not None else abs(value) * 1.05 + 1.0
        norm = float(grad @ grad)
        if norm == 0 or (upper is not None and target - best[0] <= 1e-9 * abs(target)):
            break
        step = step_factor * max(target - value, 1e-9 * abs(target)) / norm
        lam = np.maximum(0.0, lam + step * grad)
        if step_factor < 1e-4:
            break
    lam = np.zeros(inst.n_nodes) if best is None else best[1]
    extra = lam[None, :] * demand[:, None]
    res = shortest_path(inst, 0, extra, backward=True)
    lower = res.value - float(lam @ cap) if res.nodes else float("inf")
    return Bound(lower, lam, res.forward, res.backward, extra, tuple(feasible))


def fixing_masks(
    inst: Instance, s: int, bound: Bound, upper: float, offset: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """States (K, N) and hops [(N, N)] that could still be part of a plan costing ≤ ``upper``.

    ``offset`` is added to every path bound (constants, and the other sources' minimum costs).
    """
    cost = inst.state_cost[s] + bound.extra
    base = offset - float(bound.multipliers @ inst.tables.mem_bytes.astype(float))
    slack = upper + 1e-9 * abs(upper) + 1e-12
    with np.errstate(invalid="ignore"):
        through = bound.forward + bound.backward - cost + base
    states = np.isfinite(cost) & (through <= slack)
    hops: list[np.ndarray] = []
    for k in range(inst.n_units - 1):
        total = bound.forward[k][:, None] + inst.trans_cost(s, k) + bound.backward[k + 1][None, :] + base
        hops.append((total <= slack) & states[k][:, None] & states[k + 1][None, :])
    return states, hops
