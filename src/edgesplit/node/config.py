"""Node agent configuration (`edgesplit node --config NODE.yaml`), including its emulation section.

Only the node agent and the transport read ``emulation`` (DESIGN §3); the orchestrator never does.
File units are milliseconds and Mbit/s; properties convert to seconds and bits per second.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgesplit.transport.link import LinkSpec
from edgesplit.transport.tls import TlsFilesConfig


class LinkEmulationConfig(BaseModel):
    """One emulated direction of a link, applied by this node when it sends to the peer."""

    model_config = ConfigDict(extra="forbid")

    bandwidth_mbps: float = Field(0.0, ge=0.0)
    """Link rate in Mbit/s (10**6 bits/s); 0 means unlimited."""
    rtt_ms: float = Field(0.0, ge=0.0)
    """Round-trip time in ms; each message waits half of it (one-way delay)."""
    jitter_ms: float = Field(0.0, ge=0.0)
    """Uniform jitter added to the one-way delay, in ms (±)."""
    burst_bytes: int = Field(0, ge=0)
    """Token-bucket depth in bytes: how much may leave at once after the link was idle."""

    def spec(self) -> LinkSpec:
        return LinkSpec(
            bandwidth_bps=self.bandwidth_mbps * 1e6,
            rtt_s=self.rtt_ms / 1000,
            jitter_s=self.jitter_ms / 1000,
            burst_bytes=self.burst_bytes,
        )


class BlockTimeConfig(BaseModel):
    """Reference-speed cost of one block, so a small model carries the timing of a large one."""

    model_config = ConfigDict(extra="forbid")

    prefill_ms_per_token: float = Field(0.0, ge=0.0)
    """Milliseconds per prompt token at speed factor 1."""
    decode_ms: float = Field(0.0, ge=0.0)
    """Milliseconds per decode step at speed factor 1 (one batched step, whatever its batch size)."""


class EmulationConfig(BaseModel):
    """Heterogeneity this node pretends to have; every field can change at run time (SetEmulation)."""

    model_config = ConfigDict(extra="forbid")

    speed_factor: float = Field(1.0, gt=0.0)
    """Relative compute speed: 0.5 means every step takes twice as long as measured/profiled."""
    background_load: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the node taken by other work: steps take 1 / (1 - load) longer."""
    memory_cap_bytes: int | None = Field(None, ge=0)
    """Refuse to load segments whose weights exceed this many bytes (None: no cap)."""
    block_profile: dict[int, BlockTimeConfig] = Field(default_factory=dict)
    """Per block index: reference-speed time; when set for a segment's blocks, the node computes
    for real and then waits out the rest of the profiled duration."""
    links: dict[str, LinkEmulationConfig] = Field(default_factory=dict)
    """Per peer node id (or the gateway's source node id): the link this node sends over."""
    default_link: LinkEmulationConfig = Field(default_factory=LinkEmulationConfig)
    """The link to any peer not listed in ``links``."""

    def link_specs(self) -> dict[str, LinkSpec]:
        return {peer: link.spec() for peer, link in self.links.items()}

    def emulated_duration_s(
        self, start: int, end: int, prefill_tokens: int, decode_rows: int, real_s: float
    ) -> float:
        """How long a batch on blocks [start, end) must take: the profile (or the real time) slowed
        by speed factor and background load; never less than the real time."""
        profiled = [self.block_profile[b] for b in range(start, end) if b in self.block_profile]
        if profiled:
            base_s = (
                sum(
                    p.prefill_ms_per_token * prefill_tokens + (p.decode_ms if decode_rows else 0.0)
                    for p in profiled
                )
                / 1000
            )
        else:
            base_s = real_s
        return max(real_s, base_s / self.speed_factor / (1.0 - self.background_load))


class NodeConfig(BaseModel):
    """Everything one node agent process needs."""

    model_config = ConfigDict(extra="forbid")

    node_id: str = Field(min_length=1)
    """This node's id, as plans and routes name it."""
    listen: str = "127.0.0.1:0"
    """HOST:PORT for the gRPC server; port 0 picks a free port (see ``ready_file``)."""
    advertise: str | None = None
    """HOST:PORT peers should dial (defaults to ``listen`` with the bound port)."""
    model: str | None = None
    """A local checkpoint folder, or ``builtin:ARCH-PRESET[@SEED]``, to load segments from."""
    shard_dir: Path | None = None
    """A shard store folder; preferred over ``model`` when both are set."""
    shard_cache: Path | None = None
    """This node's shard cache folder: segments load from it, and a signed prepare fills it from the
    orchestrator's shard registry (SHA-256 verified). Preferred over ``shard_dir`` and ``model``."""
    standby_blocks: int = Field(0, ge=0)
    """With ``shard_cache``: also keep this many blocks on each side of every served segment on disk
    (fetched in the background), so a boundary can shift there without a download."""
    state_dir: Path | None = None
    """Where the node records the newest plan epoch it accepted (default: ``shard_cache``), so an old
    plan replayed after a restart is still refused."""
    segments: list[tuple[int, int]] = Field(default_factory=list)
    """Segments [start, end) loaded and committed at start-up as epoch 0 (plans may replace them)."""
    idle_timeout_s: float = Field(300.0, gt=0.0)
    """Sessions idle this long are dropped (their KV caches freed)."""
    max_sessions: int = Field(256, ge=1)
    """Sessions per segment; more is a CapacityError."""
    max_queued_steps: int = Field(1024, ge=1)
    """Steps waiting for the compute thread; beyond this a step fails with CapacityError."""
    batch_align_ms: float = Field(20.0, ge=0.0)
    """Longest the compute thread waits for a session of its last batch that is due back within a
    round trip, so out-of-phase sessions share batches instead of taking turns (0: never wait)."""
    max_step_tokens: int = Field(8192, ge=1)
    """Tokens one step may carry (the prefill length cap)."""
    max_tensor_bytes: int = Field(256 * 1024 * 1024, ge=1)
    """Largest activation tensor accepted, in bytes."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads for this node's compute (None: torch's default). Several nodes sharing one
    machine should split its cores; oversubscribed OpenMP pools are many times slower."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0: a free port; None: off)."""
    ready_file: Path | None = None
    """Written (atomically) with ``{"address": ..., "metrics_port": ...}`` once serving."""
    profile_blocks: int = Field(0, ge=0)
    """At join, time each of the model's first this-many blocks once (all of them: its block count) so
    the orchestrator knows this node's speed before it serves anything; 0 skips the profile."""
    emulation: EmulationConfig = Field(default_factory=EmulationConfig)
    """Emulated heterogeneity; only this node and its transport read it."""
    orchestrator_public_key: str | None = None
    """``ed25519:<base64>``: prepare/commit/release are accepted only when signed by this key (§4.6)."""
    allow_unsigned_plans: bool = False
    """Development only: accept unsigned control messages when no ``orchestrator_public_key`` is set."""
    tls: TlsFilesConfig | None = None
    """mTLS files (`edgesplit certs`); then this node's identity and trust are its certificate's."""
    trusted: bool = False
    """Whether this node may run privacy-critical blocks for ``privacy: high`` requests (until the
    node's certificate says so, the operator's word)."""
    privacy_blocks: list[int] = Field(default_factory=list)
    """The cluster's privacy-critical block indices: an untrusted node refuses privacy-high steps on them."""

    @field_validator("segments")
    @classmethod
    def _check_segments(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for start, end in value:
            if not 0 <= start < end:
                raise ValueError(f"segment {start}:{end} must satisfy 0 <= start < end")
        return value
