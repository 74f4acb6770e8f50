"""The gateway process's configuration: which model it serves, the nodes it may route to, its limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgesplit.transport.link import LinkSpec


class GatewayNodeConfig(BaseModel):
    """A node the gateway may route to, as the cluster file declares it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    address: str = ""
    """host:port of the node's gRPC server ("" until known)."""
    trusted: bool = False
    source: bool = False
    pid: int | None = None
    """Process id when the node runs on this machine (``edgesplit up``), for memory/CPU in /v1/cluster."""


class EmulatedLinkConfig(BaseModel):
    """Shaping of the link from the source node (where the gateway runs) to one peer (DESIGN §3)."""

    model_config = ConfigDict(extra="forbid")

    bandwidth_mbps: float = Field(default=0.0, ge=0)
    """Mbit/s; 0 means unlimited."""
    rtt_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)

    def spec(self) -> LinkSpec:
        """The transport's view of this link (bits per second and seconds)."""
        return LinkSpec(
            bandwidth_bps=self.bandwidth_mbps * 1e6, rtt_s=self.rtt_ms / 1e3, jitter_s=self.jitter_ms / 1e3
        )


class GatewayConfig(BaseModel):
    """Everything one gateway needs; one object, passed explicitly."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    """The id clients pass as ``model`` and /v1/models lists."""
    model_path: Path
    """The checkpoint folder: its tokenizer encodes prompts and decodes tokens."""
    nodes: list[GatewayNodeConfig] = Field(default_factory=list)
    privacy_blocks: list[int] = Field(default_factory=list)
    """Privacy-critical block indices: `privacy: high` requests keep them on trusted nodes."""
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    """Longest accepted prompt in tokens; default: the model's context length."""
    max_output_tokens: int = Field(default=512, ge=1)
    """Largest accepted ``max_tokens``; also the chat default when a request gives none."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Whole-request deadline, from arrival to the last token."""
    step_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of one step over the whole chain."""
    max_concurrent_requests: int = Field(default=64, ge=1)
    """Requests decoded at once; more are answered 503 at once rather than queued without bound."""
    chain_driven: bool = True
    """Chain-driven decoding: the last node feeds each token back to the first and the gateway only
    listens; false sends every step from the gateway (one more round trip per token)."""
    max_reprefills: int = Field(default=4, ge=0)
    """How often one request may rebuild its caches from history before giving up."""
    failover_wait_s: float = Field(default=0.0, ge=0)
    """When a node of the route fails, wait this long for the orchestrator's recovery plan (a newer
    epoch) and re-prefill on it; 0 answers the error at once (no orchestrator to wait for)."""
    privacy_wait_s: float = Field(default=0.0, ge=0)
    """A privacy-high request whose committed chain crosses an untrusted node waits this long for the
    orchestrator's privacy-keeping plan (it is never served on the leaking one); 0 refuses at once."""
    api_keys: list[str] = Field(default_factory=list)
    """When set, /v1/* requests need ``Authorization: Bearer KEY`` (/health and /metrics stay open)."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    """Largest accepted request body; a bigger one is answered 413 before it is read."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """The whole request body must arrive within this long (408 otherwise): no slow-loris bodies."""
    rate_limit_rps: float | None = Field(default=None, gt=0)
    """Completion requests per second per client (its API key, else its address); None: no limit."""
    rate_limit_burst: int = Field(default=10, ge=1)
    """How many requests a client may send at once before ``rate_limit_rps`` paces it (429 + Retry-After)."""
    admin_token: str | None = None
    """Bearer token for PUT /v1/plan and POST /v1/events; without one, only loopback clients may write."""
    source_node: str = "gateway"
    """The node the gateway runs on; nodes shape their replies on their link to it."""
    reply_listen: str = "127.0.0.1:0"
    """Where the gateway's result sink listens (nodes deliver each step's token there)."""
    reply_host: str | None = None
    """The host nodes dial to reach the sink (multi-machine: this machine's address); default: loopback."""
    emulated_links: dict[str, EmulatedLinkConfig] = Field(default_factory=dict)
    """Emulated links from the source node to each peer (only the transport reads them)."""
