"""What moving from one plan to another costs, and whether the predicted gain pays for it.

Pure. Bytes to fetch or load come from what each node reports it holds (loaded blocks and its
on-disk standby set), times come from measured fetch bandwidth; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.orchestrator.profiler import EnvironmentState


@dataclass(frozen=True)
class MoveSettings:
    horizon_s: float = 120.0
    """How long a new plan is expected to serve before conditions change again; gain counts over it."""
    disk_read_bytes_per_s: float = 500e6
    """Loading a shard a node already caches on disk (a standby shard)."""
    default_fetch_bps: float = 100e6
    """Shard download bandwidth (bit/s) for a node that has not yet measured one and has no measured link."""
    prefill_to_decode: float = 0.25
    """Per-token prefill time as a fraction of decode time, for blocks with no measured prefill cost."""
    cutover_stall_s: float = 0.02
    """Fixed pause each live session sees when it switches chains, besides its re-prefill."""


@dataclass(frozen=True)
class MoveCost:
    download_bytes: int
    load_bytes: int
    move_s: float
    """Until the new plan can commit: the slowest node's fetch + load (nodes prepare in parallel)."""
    reprefill_s: float
    """Summed over live sessions: each re-builds its KV on the new chain from the gateway's history."""


def holdings(
    env: EnvironmentState, current: Sequence[str], node_id: str
) -> tuple[frozenset[int], frozenset[int]]:
    """(loaded, cached) blocks of a node: from its reports, or — before any report — from the plan."""
    prof = env.nodes.get(node_id)
    if prof is None:
        loaded = frozenset(b for b, n in enumerate(current) if n == node_id)
        return loaded, loaded
    return prof.loaded_blocks, prof.cached_blocks | prof.loaded_blocks


def fetch_bps(env: EnvironmentState, node_id: str, settings: MoveSettings) -> float:
    prof = env.nodes.get(node_id)
    if prof is not None and prof.shard_fetch_bps:
        return prof.shard_fetch_bps
    measured = [
        link.bandwidth_bps
        for key, link in sorted(env.links.items())
        if node_id in key and link.bandwidth_bps is not None
    ]
    return min(measured) if measured else settings.default_fetch_bps


def move_cost(
    env: EnvironmentState,
    blocks: Sequence[BlockCost],
    current: Sequence[str],
    candidate: Sequence[str],
    settings: MoveSettings,
    speed_of: dict[str, float],
) -> MoveCost:
    if tuple(current) == tuple(candidate):
        return MoveCost(0, 0, 0.0, 0.0)
    download = load = 0
    move_s = 0.0
    for node_id in sorted(set(candidate)):
        needed = frozenset(b for b, n in enumerate(candidate) if n == node_id)
        loaded, cached = holdings(env, current, node_id)
        to_fetch = sum(blocks[b].param_bytes for b in needed - cached)
        to_load = sum(blocks[b].param_bytes for b in (needed & cached) - loaded)
        download += to_fetch
        load += to_load
        node_s = to_fetch * 8 / fetch_bps(env, node_id, settings) + to_load / settings.disk_read_bytes_per_s
        move_s = max(move_s, node_s)
    per_token_prefill_s = sum(
        (
            b.prefill_s_per_token
            if b.prefill_s_per_token is not None
            else b.decode_s * settings.prefill_to_decode
        )
        / speed_of.get(candidate[i], 1.0)
        for i, b in enumerate(blocks)
    )
    sessions = env.live_sessions
    reprefill_s = sessions * (env.mean_context_tokens * per_token_prefill_s + settings.cutover_stall_s)
    return MoveCost(download, load, move_s, reprefill_s)


@dataclass(frozen=True)
class NetBenefit:
    gain_s: float
    cost_s: float

    @property
    def pays(self) -> bool:
        return self.gain_s > self.cost_s


def net_benefit(
    current_latency_s: float,
    candidate_latency_s: float,
    tokens_per_s: float,
    cost: MoveCost,
    settings: MoveSettings,
) -> NetBenefit:
    """Latency-seconds saved over the horizon vs latency-seconds the move adds.

    The new plan only starts paying once it is prepared (``move_s``); a move slower than the horizon
    never pays. Gains count every token the cluster generates; the cost is the sessions' re-prefill.
    """
    per_token = current_latency_s - candidate_latency_s
    serving_s = max(0.0, settings.horizon_s - cost.move_s)
    return NetBenefit(per_token * tokens_per_s * serving_s, cost.reprefill_s)
