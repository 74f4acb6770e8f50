"""The cluster file (DESIGN §4.3) as pydantic models: declared facts plus an optional emulation section.

Owns the schema, defaults and cross-references; reading YAML with line marks lives in ``loader``.
Only node agents and the transport may read ``emulation`` (DESIGN §3); planning code must not.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any) -> int:
    """``4GiB``, ``512 MB``, ``1000`` → bytes (an int)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 4GiB or a number of bytes")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; write e.g. 4GiB, 512MB or a number of bytes")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


Bytes = Annotated[int, BeforeValidator(parse_bytes)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSpec(_Strict):
    """One machine of the cluster, as an operator declares it."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Unique name used in plans, routes and links."""
    trusted: bool = False
    """Privacy-critical blocks may run here."""
    source: bool = False
    """Requests enter here: the gateway runs on this node. Exactly one node has it."""
    memory: Bytes = Field(default=8 * 2**30)
    """Memory the node offers for weights and KV caches, in bytes (or 4GiB, 512MB, …)."""
    address: str | None = Field(default=None, pattern=r"^[^:\s]+:\d{1,5}$")
    """host:port of the node agent for multi-machine runs; `edgesplit up` picks loopback ports itself."""


class LinkConfig(_Strict):
    """A declared (undirected) link and its nominal quality; the orchestrator may use it as a prior."""

    a: str
    b: str
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)


class DefaultLink(_Strict):
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)


class LinksConfig(_Strict):
    """Declared pairs plus a ``default`` for every other pair (no default: unlisted pairs cannot talk)."""

    default: DefaultLink | None = None
    pairs: list[LinkConfig] = Field(default_factory=list)


def _links_shape(value: Any) -> Any:
    """Accept a plain list of pairs as shorthand for ``{pairs: [...]}``."""
    return {"pairs": value} if isinstance(value, list) else value


class ThresholdsConfig(_Strict):
    """Θ of Algorithm 1; defaults are the paper's Table 3."""

    latency_ms: float = Field(default=150.0, gt=0)
    utilization: float = Field(default=0.85, gt=0, le=1)
    bandwidth_mbps: float = Field(default=50.0, gt=0)
    cooldown_s: float = Field(default=30.0, ge=0)


class WeightsConfig(_Strict):
    """Φ = αL + βU + γP."""

    alpha: float = Field(default=1.0, ge=0)
    beta: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)


BlockRef = int | str
"""A block index, or ``embedding``, ``head``, ``layer:N`` (transformer layer N = block N + 1)."""


class PrivacyConfig(_Strict):
    """Which blocks are privacy-critical; by default the embedding, the first layer and the head."""

    blocks: list[BlockRef] = Field(default_factory=lambda: list[BlockRef](["embedding", "layer:0", "head"]))

    def block_indices(self, num_blocks: int) -> list[int]:
        """Resolve to sorted block indices for a model of ``num_blocks`` blocks."""
        return sorted({resolve_block(ref, num_blocks) for ref in self.blocks})


def resolve_block(ref: BlockRef, num_blocks: int) -> int:
    if isinstance(ref, int):
        index = ref
    elif ref == "embedding":
        index = 0
    elif ref == "head":
        index = num_blocks - 1
    elif ref.startswith("layer:") and ref[6:].isdigit():
        index = int(ref[6:]) + 1
    else:
        raise ValueError(f"block {ref!r}: write an index, 'embedding', 'head' or 'layer:N'")
    if not 0 <= index < num_blocks:
        raise ValueError(f"block {ref!r} is outside this model's blocks 0:{num_blocks}")
    return index


class LoadPoint(_Strict):
    at_s: float = Field(ge=0)
    load: float = Field(ge=0, lt=1)


class NodeEmulation(_Strict):
    """How one node pretends to be slower/busier/smaller than this machine."""

    speed_factor: float = Field(default=1.0, gt=0)
    """Relative compute speed: 0.5 takes twice as long."""
    background_load: float = Field(default=0.0, ge=0, lt=1)
    """Share of the node taken by other work at start."""
    memory_cap: Bytes | None = None
    """Refuse segments whose weights exceed this (bytes or 1GiB, …)."""
    load_trace: list[LoadPoint] = Field(default_factory=list)
    """Background load changes over time (seconds after start-up)."""


class LinkPoint(_Strict):
    at_s: float = Field(ge=0)
    bandwidth_mbps: float | None = Field(default=None, gt=0)
    rtt_ms: float | None = Field(default=None, ge=0)


class LinkEmulation(_Strict):
    """How the (undirected) link between two nodes is shaped, both ways."""

    a: str
    b: str
    bandwidth_mbps: float = Field(gt=0)
    rtt_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    trace: list[LinkPoint] = Field(default_factory=list)
    """Changes over time (seconds after start-up)."""


class BlockTime(_Strict):
    prefill_ms_per_token: float = Field(default=0.0, ge=0)
    decode_ms: float = Field(default=0.0, ge=0)


class EmulationConfig(_Strict):
    """Emulated heterogeneity (DESIGN §3): read by node agents and the transport only."""

    nodes: dict[str, NodeEmulation] = Field(default_factory=dict)
    links: list[LinkEmulation] = Field(default_factory=list)
    default_link: DefaultLink | None = None
    """Shaping for every pair not in ``links`` (none: unshaped loopback)."""
    block_profile: dict[int, BlockTime] = Field(default_factory=dict)
    """Per block index, the reference-speed time, so a small model carries a large one's timing."""


class ShardsConfig(_Strict):
    """How nodes get their weights: read from the checkpoint, or fetched from the orchestrator's registry."""

    fetch: bool = False
    """Nodes start with an empty shard cache and fetch each block they are planned to run from the
    orchestrator's shard registry (SHA-256 checked against the signed plan), then load it from disk."""
    standby_blocks: int = Field(default=0, ge=0)
    """With ``fetch``: each node also keeps this many blocks beyond each end of its segments on disk,
    fetched in the background, so a boundary can shift without a download."""


class GatewaySection(_Strict):
    """Optional gateway limits."""

    max_prompt_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)
    step_timeout_s: float = Field(default=30.0, gt=0)
    max_concurrent_requests: int = Field(default=64, ge=1)
    chain_driven: bool = True
    """The last node feeds each token back to the first (false: one gateway round trip per token)."""
    port: int = Field(default=0, ge=0, le=65535)
    """Port for `edgesplit up`'s gateway on 127.0.0.1 (0: any free port)."""


class OrchestratorSection(_Strict):
    """Optional ``orchestrator:`` knobs of the adaptive orchestrator; every default is what it uses
    without the section. Θ itself lives in ``thresholds`` (the paper's Table 3)."""

    monitor_interval_s: float = Field(default=1.0, gt=0)
    """Δt: how often a monitoring cycle runs, in s (`edgesplit orchestrator --interval` overrides it)."""
    improvement_interval_s: float | None = Field(default=120.0, gt=0)
    """With no trigger active, look for a clearly better plan this often, in s (how a recovered node
    wins its segments back); null: only on triggers, as in the paper. `--improve-interval` overrides."""
    improvement_min_gain: float = Field(default=0.20, ge=0, lt=1)
    """An untriggered change (improvement check) must cut predicted latency by this fraction."""
    min_relative_gain: float = Field(default=0.10, ge=0, lt=1)
    """A triggered, non-urgent change must cut predicted latency by this fraction (or fix a target)."""
    confirm_s: float = Field(default=5.0, ge=0)
    """A change asked for by the latency trigger or the improvement check alone is made only if the
    same plan is chosen again at least this long later (s), from fresh measurements."""
    horizon_s: float = Field(default=120.0, gt=0)
    """How long a new plan is expected to serve, in s: a move's gain counts over it, minus the move time."""
    replan_interval_s: float = Field(default=10.0, ge=0)
    """While a trigger stays active without a change, re-plan at most this often, in s."""
    persist_cycles: int = Field(default=2, ge=1)
    """Monitoring cycles a threshold must be crossed for before its trigger fires."""
    release_fraction: float = Field(default=0.10, ge=0, lt=1)
    """How far inside its threshold a value must come back before the trigger re-arms (fraction)."""
    ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    """Weight of the newest (median-filtered) sample in every smoothed figure."""
    median_window: int = Field(default=5, ge=1)
    """Samples in the median filter in front of each EWMA (outliers shorter than half of it vanish)."""
    bandwidth_window: int = Field(default=6, ge=1)
    """Link bandwidth samples (probes, observed transfers) in the window a link's estimate is taken from."""
    bandwidth_quantile: float = Field(default=0.8, ge=0, le=1)
    """Which order statistic of that window is believed: samples only err low (a delayed probe), so a
    high one; a collapse counts once most of the window agrees."""
    heartbeat_timeout_s: float = Field(default=5.0, gt=0)
    """A node silent this long is lost (node-loss trigger, acts at once), in s."""
    start_timeout_s: float = Field(default=60.0, gt=0)
    """At start, how long to wait for the nodes to answer, in s; if none has, the orchestrator exits
    with an error naming them (`--start-timeout` overrides)."""
    disk_read_bytes_per_s: float = Field(default=500e6, gt=0)
    """Loading a shard a node caches on disk (its standby set), in bytes/s."""
    solver: Literal["auto", "exact", "dp", "greedy"] = "auto"
    """The planner's solver (`edgesplit plan --solver`)."""
    planner_time_limit_s: float = Field(default=5.0, gt=0)
    """Wall-clock budget of one planning call, in s."""
    min_change_epsilon: float | None = Field(default=0.02, ge=0)
    """Among plans within this relative Φ of the best, the planner picks the one moving fewest bytes;
    null: always the best Φ."""


class ClusterConfig(_Strict):
    """A whole cluster file."""

    model: str = Field(min_length=1)
    """A local checkpoint folder or ``builtin:NAME``."""
    nodes: list[NodeSpec] = Field(min_length=1)
    links: Annotated[LinksConfig, BeforeValidator(_links_shape)] = Field(
        default_factory=lambda: LinksConfig()
    )
    thresholds: ThresholdsConfig = Field(default_factory=lambda: ThresholdsConfig())
    weights: WeightsConfig = Field(default_factory=lambda: WeightsConfig())
    privacy: PrivacyConfig = Field(default_factory=lambda: PrivacyConfig())
    request_privacy: Literal["high", "none"] = "high"
    """Plan under this privacy level (`high`: privacy blocks only on trusted nodes)."""
    gateway: GatewaySection = Field(default_factory=lambda: GatewaySection())
    shards: ShardsConfig = Field(default_factory=lambda: ShardsConfig())
    orchestrator: OrchestratorSection = Field(default_factory=lambda: OrchestratorSection())
    """Optional knobs of the adaptive orchestrator (defaults: what it does without them)."""
    emulation: EmulationConfig | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> ClusterConfig:
        for path, message in cross_reference_errors(self):
            raise CrossReferenceError(path, message)
        return self

    @property
    def source(self) -> NodeSpec:
        return next(n for n in self.nodes if n.source)

    def node(self, node_id: str) -> NodeSpec:
        return next(n for n in self.nodes if n.id == node_id)


class CrossReferenceError(ValueError):
    """A reference to an undeclared node (or a duplicate/missing one), with the key path it is at."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def cross_reference_errors(cfg: ClusterConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Every (key path, message) where the file names a node it does not declare, in file order."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    ids = [n.id for n in cfg.nodes]
    for i, node in enumerate(cfg.nodes):
        if ids.index(node.id) != i:
            found.append((("nodes", i, "id"), f"node id {node.id!r} is declared twice"))
    sources = [i for i, n in enumerate(cfg.nodes) if n.source]
    if len(sources) != 1:
        where: tuple[str | int, ...] = ("nodes", sources[1], "source") if sources else ("nodes",)
        found.append((where, f"exactly one node must have `source: true`, found {len(sources)}"))
    known = set(ids)
    for i, link in enumerate(cfg.links.pairs):
        for end in ("a", "b"):
            if getattr(link, end) not in known:
                found.append((("links", "pairs", i, end), f"link names unknown node {getattr(link, end)!r}"))
        if link.a == link.b:
            found.append((("links", "pairs", i, "b"), "a link joins two different nodes"))
    if cfg.emulation is not None:
        for node_id in cfg.emulation.nodes:
            if node_id not in known:
                found.append((("emulation", "nodes", node_id), f"emulation names unknown node {node_id!r}"))
        for i, emulated in enumerate(cfg.emulation.links):
            for end in ("a", "b"):
                if getattr(emulated, end) not in known:
                    found.append(
                        (
                            ("emulation", "links", i, end),
                            f"emulated link names unknown node {getattr(emulated, end)!r}",
                        )
                    )
    for i, ref in enumerate(cfg.privacy.blocks):
        if isinstance(ref, str) and ref not in ("embedding", "head") and not re.fullmatch(r"layer:\d+", ref):
            found.append(
                (("privacy", "blocks", i), f"block {ref!r}: write an index, 'embedding', 'head' or 'layer:N'")
            )
    return found
