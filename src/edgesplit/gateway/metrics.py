"""Prometheus metrics of one gateway, in a private registry (so tests can build many apps).

Names follow vLLM's stems with the ``edgesplit_`` prefix and end in their unit.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0)


class GatewayMetrics:
    """Request, token and per-hop metrics; rendered at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests_running = Gauge(
            "edgesplit_num_requests_running", "Requests being decoded now.", registry=r
        )
        self.prompt_tokens = Counter("edgesplit_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter("edgesplit_generation_tokens", "Tokens generated.", registry=r)
        self.request_success = Counter(
            "edgesplit_request_success",
            "Finished requests by finish reason.",
            ["finished_reason"],
            registry=r,
        )
        self.request_errors = Counter(
            "edgesplit_request_errors", "Requests answered with an error, by status.", ["status"], registry=r
        )
        self.reprefills = Counter(
            "edgesplit_reprefills", "Sessions rebuilt from history after a hop lost its cache.", registry=r
        )
        self.ttft_seconds = Histogram(
            "edgesplit_time_to_first_token_seconds", "Time to first token.", buckets=_TTFT_BUCKETS, registry=r
        )
        self.itl_seconds = Histogram(
            "edgesplit_inter_token_latency_seconds", "Time between tokens.", buckets=_ITL_BUCKETS, registry=r
        )
        self.e2e_seconds = Histogram(
            "edgesplit_e2e_request_latency_seconds", "End-to-end latency.", buckets=_E2E_BUCKETS, registry=r
        )
        self.hop_compute_seconds = Histogram(
            "edgesplit_hop_compute_seconds",
            "Compute time of one step on one node, as the node measured it.",
            ["node"],
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self.privacy_violations = Counter(
            "edgesplit_privacy_violations",
            "privacy: high requests whose privacy-critical blocks ran on an untrusted node (must stay 0).",
            registry=r,
        )
        self.plan_epoch = Gauge("edgesplit_plan_epoch", "Epoch of the committed plan.", registry=r)
