"""One mode's figures (DESIGN §4.4) from the requests actually sent: latency, SLA, failures, privacy.

Pure: records in, a ``ModeResult`` out. Every request offered is in every denominator; a request
that did not complete counts as failed and as an SLA miss, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgesplit.evaluation.load import RequestRecord


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyStats(_Strict):
    """End-to-end request latency in milliseconds, over completed requests (null: none completed)."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None


class TtftStats(_Strict):
    """Time to first token in milliseconds, from the scheduled send."""

    p50: float | None
    p95: float | None


class ModeResult(_Strict):
    """One mode's row of results.json, with exactly the keys of DESIGN §4.4."""

    requests: int = Field(ge=0)
    """Requests offered (sent on schedule)."""
    completed: int = Field(ge=0)
    failed: int = Field(ge=0)
    """Every request that did not complete: error, timeout or dropped."""
    latency_ms: LatencyStats
    ttft_ms: TtftStats
    throughput_rps: float = Field(ge=0)
    """Completed requests per second of the run (load start to the last answer)."""
    tokens_per_s: float = Field(ge=0)
    """Generated tokens of completed requests per second of the run."""
    sla_budget_ms: float = Field(gt=0)
    sla_hit_rate: float = Field(ge=0, le=1)
    """Share of offered requests that completed within the budget."""
    utilization_mean: float = Field(ge=0, le=1)
    """Mean of the node utilisation samples taken during the run."""
    reconfigurations: int = Field(ge=0)
    """Plans committed during the run (after the initial deployment)."""
    privacy_violations: int = Field(ge=0)
    """`privacy: high` requests whose privacy-critical blocks ran (or may have run) on an untrusted node."""
    failures_per_hour: float = Field(ge=0)


def summarize(
    records: Sequence[RequestRecord],
    *,
    budget_ms: float,
    duration_s: float,
    utilization_samples: Sequence[float],
    reconfigurations: int,
    trusted_nodes: Collection[str],
    privacy_blocks: Collection[int],
) -> ModeResult:
    """The §4.4 figures of one mode's run."""
    ok = [r for r in records if r.status == "ok"]
    latencies_ms = [r.latency_s * 1000.0 for r in ok]
    ttfts_ms = [t * 1000.0 for r in ok if (t := r.ttft_s) is not None]
    span_s = max([duration_s, *(r.end_s for r in records)])
    failed = len(records) - len(ok)
    hits = sum(1 for ms in latencies_ms if ms <= budget_ms)
    return ModeResult(
        requests=len(records),
        completed=len(ok),
        failed=failed,
        latency_ms=LatencyStats(
            p50=percentile(latencies_ms, 50),
            p95=percentile(latencies_ms, 95),
            p99=percentile(latencies_ms, 99),
            mean=float(np.mean(latencies_ms)) if latencies_ms else None,
        ),
        ttft_ms=TtftStats(p50=percentile(ttfts_ms, 50), p95=percentile(ttfts_ms, 95)),
        throughput_rps=len(ok) / span_s,
        tokens_per_s=sum(r.tokens for r in ok) / span_s,
        sla_budget_ms=budget_ms,
        sla_hit_rate=hits / len(records) if records else 0.0,
        utilization_mean=min(1.0, float(np.mean(utilization_samples))) if len(utilization_samples) else 0.0,
        reconfigurations=reconfigurations,
        privacy_violations=sum(1 for r in records if violates_privacy(r, trusted_nodes, privacy_blocks)),
        failures_per_hour=failed * 3600.0 / span_s,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between ranks (None for no values)."""
    return float(np.percentile(values, q)) if len(values) else None


def violates_privacy(
    record: RequestRecord, trusted_nodes: Collection[str], privacy_blocks: Collection[int]
) -> bool:
    """A `privacy: high` request whose privacy blocks ran on an untrusted node, or that completed
    without saying where it ran (compliance that cannot be shown is not counted as compliance)."""
    if record.privacy != "high":
        return False
    if record.nodes_by_block is None:
        return record.status == "ok"
    return any(
        node not in trusted_nodes for block in privacy_blocks for node in record.nodes_by_block.get(block, ())
    )
