"""The gateway-facing data-plane interface: run one step of one session over a chain of segments.

Implementations: in-process (tests, simulator, `generate`) and gRPC (real processes). The gateway,
the evaluation harness and tests drive the same pipeline code through this one interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edgesplit.model.steps import SamplingParams
from edgesplit.transport.link import LinkSpec


@dataclass(frozen=True)
class Hop:
    """One segment of a chain: the node that runs blocks [start, end) and where it listens."""

    node_id: str
    address: str
    start: int
    end: int


@dataclass(frozen=True)
class Route:
    """The chain a step travels, fixed by a committed plan's epoch. Hops cover 0:B in order."""

    epoch: int
    hops: tuple[Hop, ...]


@dataclass(frozen=True)
class ChainStep:
    """One session's step as the gateway sends it: new token ids and the cache length they follow."""

    session_id: str
    token_ids: tuple[int, ...]
    position: int
    sampling: SamplingParams = SamplingParams()
    privacy_high: bool = True
    """The request's privacy tag; nodes refuse privacy-critical blocks they are not trusted for."""


@dataclass(frozen=True)
class HopTiming:
    """What one node measured for one step (durations only: never compare clocks across processes)."""

    node_id: str
    queue_s: float
    compute_s: float
    send_s: float


@dataclass(frozen=True)
class ChainResult:
    """The sampled next token and the per-hop durations each node measured."""

    session_id: str
    token_id: int
    timings: tuple[HopTiming, ...] = field(default_factory=tuple)
    arrived_s: float = 0.0
    """``time.perf_counter()`` when the result reached this process (0: not recorded)."""


class SegmentClient(Protocol):
    """Runs steps over a chain; raises ``SessionNotFoundError`` when a hop lost the KV cache."""

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult: ...

    async def end_session(self, route: Route, session_id: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class LinkEmulator(Protocol):
    """A client that shapes what it sends on emulated links (the testbed, DESIGN §3)."""

    def set_links(self, links: dict[str, LinkSpec], default_link: LinkSpec | None = None) -> None:
        """Replace every link from the source node: ``links`` by peer id, ``default_link`` for the rest."""
        ...
