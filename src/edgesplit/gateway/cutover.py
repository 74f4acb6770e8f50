"""Moving a live session to a new chain at a plan change: KV-cache transfer when predicted cheaper
than re-prefill, else (and on any failure) re-prefill from the gateway's history.

Correctness never depends on the transfer: a failed or skipped one leaves the new session empty and
the decode loop re-prefills it. Knows nothing about HTTP; talks to nodes only through ``KVMover``.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgesplit.model.kv_cache import KVSnapshot
from edgesplit.transport.base import Hop, Route

log = logging.getLogger(__name__)

EWMA_ALPHA = 0.3


class KVMover(Protocol):
    """Reads a session's KV cache from one hop and installs it in another (node RPCs)."""

    async def export_kv(self, hop: Hop, session_id: str, timeout_s: float) -> KVSnapshot: ...

    async def import_kv(self, hop: Hop, epoch: int, snap: KVSnapshot, timeout_s: float) -> None: ...


def layers_of(start: int, end: int, num_blocks: int) -> range:
    """Transformer layers run by blocks [start, end) (block 0 is the embedding, the last the head)."""
    return range(max(start, 1) - 1, min(end, num_blocks - 1) - 1)


@dataclass(frozen=True)
class CutoverSettings:
    min_tokens: int = 16
    """Shorter histories always re-prefill: a transfer's fixed RPC cost cannot win there."""
    timeout_s: float = 10.0
    """Whole transfer (every export and import); past it the session re-prefills."""
    enabled: bool = True


@dataclass
class CutoverStats:
    """What the gateway did at cut-overs (for metrics, tests and the benchmark)."""

    transfers: int = 0
    reprefills: int = 0
    failures: int = 0
    last_transfer_s: float = 0.0
    last_transfer_bytes: int = 0


@dataclass
class Cutover:
    """Decides, per moved session, between KV transfer and re-prefill, and runs the transfer.

    The prediction: re-prefill costs ``tokens ×`` the gateway's measured seconds per prefill token
    (recent multi-token steps, ``prefill_samples``); a transfer costs ``tokens ×`` the measured
    seconds per token of earlier transfers. Before any transfer was measured, a long enough history
    is transferred (that is how the rate gets measured).
    """

    mover: KVMover | None
    prefill_samples: Callable[[], Iterable[Mapping[str, Any]]] = lambda: ()
    settings: CutoverSettings = CutoverSettings()
    stats: CutoverStats = field(default_factory=CutoverStats)
    transfer_s_per_token: float | None = None

    def prefill_s_per_token(self) -> float | None:
        rates = [
            float(s["latency_s"]) / int(s["tokens"])
            for s in self.prefill_samples()
            if int(s.get("tokens", 0)) >= self.settings.min_tokens
        ]
        return statistics.median(rates) if rates else None

    def prefer_transfer(self, tokens: int) -> bool:
        if self.mover is None or not self.settings.enabled or tokens < self.settings.min_tokens:
            return False
        if self.transfer_s_per_token is None:
            return True
        prefill = self.prefill_s_per_token()
        return prefill is None or self.transfer_s_per_token < prefill

    async def move(self, old: Route, new: Route, old_session: str, new_session: str, tokens: int) -> int:
        """Give ``new_session`` on ``new`` the caches ``old_session`` holds on ``old`` (``tokens`` of them).

        Returns how many tokens the new session's caches now hold: ``tokens`` after a transfer, 0 when
        the loop must re-prefill (skipped, or any failure — logged, never raised).
        """
        if not self.prefer_transfer(tokens):
            self.stats.reprefills += 1
            return 0
        assert self.mover is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                nbytes = await transfer(self.mover, old, new, old_session, new_session, tokens, self.settings)
        except Exception as exc:  # any failure: the session re-prefills, as without transfer
            log.warning("KV transfer %s -> %s failed, re-prefilling: %s", old_session, new_session, exc)
            self.stats.failures += 1
            self.stats.reprefills += 1
            return 0
        elapsed = time.perf_counter() - started
        rate = elapsed / tokens
        old_rate = self.transfer_s_per_token
        self.transfer_s_per_token = rate if old_rate is None else old_rate + EWMA_ALPHA * (rate - old_rate)
        self.stats.transfers += 1
        self.stats.last_transfer_s = elapsed
        self.stats.last_transfer_bytes = nbytes
        return tokens


async def transfer(
    mover: KVMover,
    old: Route,
    new: Route,
    old_session: str,
    new_session: str,
    tokens: int,
    settings: CutoverSettings = CutoverSettings(),
) -> int:
    """Export every old hop's layers, check they form one session of ``tokens`` tokens, import each new
    hop's share under ``new_session`` in epoch ``new.epoch``. Returns the bytes moved."""
    num_blocks = old.hops[-1].end
    if new.hops[-1].end != num_blocks:
        raise ValueError(f"routes cover {num_blocks} and {new.hops[-1].end} blocks")
    timeout = settings.timeout_s
    # 1) Export from every old hop (in parallel); hops without layers still confirm the length.
    snaps = await asyncio.gather(*(mover.export_kv(hop, old_session, timeout) for hop in old.hops))
    layers: dict[int, Any] = {}
    for hop, snap in zip(old.hops, snaps, strict=True):
        if snap.length != tokens:
            raise ValueError(f"{hop.node_id} holds {snap.length} tokens of {old_session}, expected {tokens}")
        layers.update(snap.layers)
    merged = KVSnapshot(new_session, tokens, layers)
    missing = [i for i in layers_of(0, num_blocks, num_blocks) if i not in layers]
    if missing:
        raise ValueError(f"the old chain exported no KV for layers {missing}")
    # 2) Import each new hop's layers (in parallel).
    parts = [(hop, merged.subset(layers_of(hop.start, hop.end, num_blocks))) for hop in new.hops]
    await asyncio.gather(*(mover.import_kv(hop, new.epoch, part, timeout) for hop, part in parts))
    return merged.nbytes()


class AdminKVMover:
    """KV transfer over the nodes' gRPC admin surface, relayed by the gateway.

    ``charge(node_id, nbytes)`` delays by the emulated link between the gateway and that node, so a
    transfer costs what the bytes would cost on the emulated network (DESIGN §3 rule 2).
    """

    def __init__(self, tls: Any = None, charge: Callable[[str, int], Awaitable[None]] | None = None) -> None:
        self._tls = tls
        self._charge = charge
        self._admins: dict[str, Any] = {}

    def _admin(self, address: str) -> Any:
        if address not in self._admins:
            from edgesplit.transport.node_admin import NodeAdmin

            self._admins[address] = NodeAdmin(address, self._tls) if self._tls else NodeAdmin(address)
        return self._admins[address]

    async def export_kv(self, hop: Hop, session_id: str, timeout_s: float) -> KVSnapshot:
        got = await self._admin(hop.address).export_kv(session_id, hop.start, hop.end, timeout_s)
        snap: KVSnapshot = got.snapshot
        if self._charge is not None:
            await self._charge(hop.node_id, snap.nbytes())
        return snap

    async def import_kv(self, hop: Hop, epoch: int, snap: KVSnapshot, timeout_s: float) -> None:
        from edgesplit.wire.messages import KVTransfer

        if self._charge is not None:
            await self._charge(hop.node_id, snap.nbytes())
        await self._admin(hop.address).import_kv(KVTransfer(hop.start, hop.end, snap, epoch), timeout_s)

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._admins.values()), return_exceptions=True)
        self._admins.clear()


def cutover_for(client: object, prefill_samples: Callable[[], Iterable[Mapping[str, Any]]]) -> Cutover:
    """KV transfer for a gRPC client (its TLS and emulated links); re-prefill only for anything else."""
    from edgesplit.transport.grpc_client import GrpcSegmentClient

    if not isinstance(client, GrpcSegmentClient):
        return Cutover(None, prefill_samples)
    peers = getattr(client, "_peers", None)

    async def charge(node_id: str, nbytes: int) -> None:
        if peers is not None:
            await peers.link(node_id).transmit(nbytes)

    return Cutover(AdminKVMover(getattr(client, "_tls", None), charge), prefill_samples)
