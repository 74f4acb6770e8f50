"""The planner's problem: the §4.2 file format (pydantic) and the frozen domain value solvers read.

Owns parsing and validation (every message names the offending field); computes no costs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgesplit.errors import InvalidProblemError

Privacy = Literal["high", "none"]


class BlockSpec(BaseModel):
    """One block of the model, in execution order."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    work_ms: float = Field(ge=0)
    """Compute time of one token through this block on a speed-1.0 node, ms."""
    param_bytes: int = Field(default=0, ge=0)
    kv_bytes_per_token: float = Field(default=0, ge=0)
    """KV-cache bytes one context token needs in this block (per session)."""
    out_bytes: float = Field(default=0, ge=0)
    """Bytes of one token's output on the wire (last block: what returns to the source)."""
    privacy: bool = False


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    speed: float = Field(gt=0)
    mem_bytes: int = Field(ge=0)
    util: float = Field(default=0.0, ge=0, lt=1)
    """Background utilisation in [0, 1)."""
    trusted: bool = False
    block_ms: list[float] | None = None
    """Optional measured unloaded per-block times on this node, ms; replaces ``work_ms / speed``."""


class LinkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: str
    b: str
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(default=0.0, ge=0)


class SourceSpec(BaseModel):
    """One request source (a user device) in the multi-source form; unset fields inherit the top level."""

    model_config = ConfigDict(extra="forbid")
    node: str
    token_rate: float | None = Field(default=None, ge=0)
    sessions: int | None = Field(default=None, ge=1)
    input_bytes: float | None = Field(default=None, ge=0)
    privacy: Privacy | None = None


class WeightsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(default=1.0, ge=0)
    beta: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)


class ProblemFile(BaseModel):
    """The planner problem file, v1 (DESIGN §4.2), plus the optional ``sources`` list."""

    model_config = ConfigDict(extra="forbid")
    blocks: list[BlockSpec]
    nodes: list[NodeSpec]
    links: list[LinkSpec] = Field(default_factory=list)
    source: str | None = None
    sources: list[SourceSpec] | None = None
    input_bytes: float = Field(default=4, ge=0)
    context_tokens: int = Field(default=0, ge=0)
    sessions: int = Field(default=1, ge=1)
    token_rate: float = Field(default=0.0, ge=0)
    """Tokens per second the source generates (drives the utilisation term ρ)."""
    privacy: Privacy = "high"
    weights: WeightsSpec = Field(default_factory=WeightsSpec)

    def to_problem(self) -> Problem:
        """The validated domain value (cross-field checks happen in ``Problem``)."""
        if self.sources is None:
            if self.source is None:
                raise InvalidProblemError("source: missing; name the node where requests enter")
            specs = [SourceSpec(node=self.source)]
        else:
            if self.source is not None:
                raise InvalidProblemError("source: give either `source` or `sources`, not both")
            specs = self.sources
        sources = tuple(
            Source(
                node=s.node,
                token_rate=self.token_rate if s.token_rate is None else s.token_rate,
                sessions=self.sessions if s.sessions is None else s.sessions,
                input_bytes=self.input_bytes if s.input_bytes is None else s.input_bytes,
                privacy=self.privacy if s.privacy is None else s.privacy,
            )
            for s in specs
        )
        return Problem(
            blocks=tuple(Block(**b.model_dump()) for b in self.blocks),
            nodes=tuple(
                Node(**{**n.model_dump(), "block_ms": None if n.block_ms is None else tuple(n.block_ms)})
                for n in self.nodes
            ),
            links=tuple(Link(**lk.model_dump()) for lk in self.links),
            sources=sources,
            context_tokens=self.context_tokens,
            weights=Weights(**self.weights.model_dump()),
        )


@dataclass(frozen=True)
class Block:
    name: str
    work_ms: float
    param_bytes: int
    kv_bytes_per_token: float
    out_bytes: float
    privacy: bool


@dataclass(frozen=True)
class Node:
    id: str
    speed: float
    mem_bytes: int
    util: float
    trusted: bool
    block_ms: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    bandwidth_mbps: float
    rtt_ms: float


@dataclass(frozen=True)
class Source:
    """Where one stream of requests enters; its tokens start and end on this node."""

    node: str
    token_rate: float = 0.0
    sessions: int = 1
    input_bytes: float = 4.0
    privacy: Privacy = "high"


@dataclass(frozen=True)
class Weights:
    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 0.0


@dataclass(frozen=True)
class Problem:
    """A validated planner problem. Construct it directly or with ``parse_problem``; both validate."""

    blocks: tuple[Block, ...]
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    sources: tuple[Source, ...]
    context_tokens: int = 0
    weights: Weights = Weights()

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def source(self) -> Source:
        """The first (in the single-source form: the only) source."""
        return self.sources[0]

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    def index_of(self, node_id: str) -> int:
        return self.node_ids.index(node_id)

    def with_changes(self, **changes: Any) -> Problem:
        """A copy with some fields replaced (validated again)."""
        from dataclasses import replace

        return replace(self, **changes)


def _validate(p: Problem) -> None:
    """Cross-field and bound checks; each message names the field and the value."""
    if not p.blocks:
        raise InvalidProblemError("blocks: must list at least one block (got an empty list)")
    if not p.nodes:
        raise InvalidProblemError("nodes: must list at least one node (got an empty list)")
    for i, b in enumerate(p.blocks):
        for name in ("work_ms", "param_bytes", "kv_bytes_per_token", "out_bytes"):
            value = getattr(b, name)
            if not value >= 0:
                raise InvalidProblemError(f"blocks[{i}].{name}: must be >= 0 (got {value})")
    seen: set[str] = set()
    for i, n in enumerate(p.nodes):
        if n.id in seen:
            raise InvalidProblemError(f"nodes[{i}].id: duplicate node id {n.id!r}")
        seen.add(n.id)
        if not n.speed > 0:
            raise InvalidProblemError(f"nodes[{i}].speed: must be > 0 (got {n.speed}) for node {n.id!r}")
        if not 0 <= n.util < 1:
            raise InvalidProblemError(f"nodes[{i}].util: must be in [0, 1) (got {n.util}) for node {n.id!r}")
        if n.mem_bytes < 0:
            raise InvalidProblemError(f"nodes[{i}].mem_bytes: must be >= 0 (got {n.mem_bytes})")
        if n.block_ms is not None:
            if len(n.block_ms) != len(p.blocks):
                raise InvalidProblemError(
                    f"nodes[{i}].block_ms: has {len(n.block_ms)} entries but there are {len(p.blocks)} blocks"
                )
            if any(not t >= 0 for t in n.block_ms):
                raise InvalidProblemError(f"nodes[{i}].block_ms: every entry must be >= 0")
    pairs: set[frozenset[str]] = set()
    for i, lk in enumerate(p.links):
        for end in ("a", "b"):
            if getattr(lk, end) not in seen:
                raise InvalidProblemError(f"links[{i}].{end}: unknown node {getattr(lk, end)!r}")
        if lk.a == lk.b:
            raise InvalidProblemError(f"links[{i}]: links a node to itself ({lk.a!r})")
        pair = frozenset((lk.a, lk.b))
        if pair in pairs:
            raise InvalidProblemError(f"links[{i}]: duplicate link between {lk.a!r} and {lk.b!r}")
        pairs.add(pair)
        if not lk.bandwidth_mbps > 0:
            raise InvalidProblemError(f"links[{i}].bandwidth_mbps: must be > 0 (got {lk.bandwidth_mbps})")
        if not lk.rtt_ms >= 0:
            raise InvalidProblemError(f"links[{i}].rtt_ms: must be >= 0 (got {lk.rtt_ms})")
    if not p.sources:
        raise InvalidProblemError("sources: must name at least one source node")
    field = "source" if len(p.sources) == 1 else "sources"
    for i, s in enumerate(p.sources):
        where = field if field == "source" else f"sources[{i}].node"
        if s.node not in seen:
            raise InvalidProblemError(f"{where}: {s.node!r} is not a node id (nodes: {sorted(seen)})")
        if s.token_rate < 0 or s.sessions < 1 or s.input_bytes < 0:
            raise InvalidProblemError(f"{where}: token_rate, input_bytes must be >= 0 and sessions >= 1")
    if len({s.node for s in p.sources}) != len(p.sources):
        raise InvalidProblemError("sources: each source node may appear only once")
    if p.context_tokens < 0:
        raise InvalidProblemError(f"context_tokens: must be >= 0 (got {p.context_tokens})")
    for name in ("alpha", "beta", "gamma"):
        if not getattr(p.weights, name) >= 0:
            raise InvalidProblemError(f"weights.{name}: must be >= 0")


def parse_problem(data: Mapping[str, Any]) -> Problem:
    """Validate a problem given as a JSON-like mapping (the orchestrator's path)."""
    try:
        spec = ProblemFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidProblemError(_describe(exc)) from None
    return spec.to_problem()


def load_problem(path: str | Path) -> Problem:
    """Read and validate a problem file (JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidProblemError(f"problem file {str(path)!r}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidProblemError(
            f"problem file {str(path)!r}: not JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidProblemError(f"problem file {str(path)!r}: must hold a JSON object")
    return parse_problem(data)


def _describe(exc: ValidationError) -> str:
    """First pydantic error as 'nodes[1].speed: must be greater than 0 (got -1)'."""
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    more = f"; and {exc.error_count() - 1} more error(s)" if exc.error_count() > 1 else ""
    return f"{loc or 'problem'}: {err['msg']}{shown}{more}"
