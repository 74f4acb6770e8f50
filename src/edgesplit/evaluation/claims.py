"""The paper's claims (issue 6 "what it must show") checked against one run's measured figures.

Pure: ``ModeResult`` by mode in, a list of checks out; a check whose modes did not run is skipped,
never passed. The thresholds are the issue's, not tuned to any result.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.evaluation.metrics import ModeResult


@dataclass(frozen=True)
class ClaimCheck:
    """One claim: what was measured, what it must be, and whether it holds."""

    claim: str
    measured: str
    target: str
    holds: bool


def check_claims(results: dict[str, ModeResult]) -> list[ClaimCheck]:
    """Every claim the modes present can test, in the issue's order."""
    checks: list[ClaimCheck] = []
    adaptive, static, oracle = results.get("adaptive"), results.get("static"), results.get("oracle")
    if adaptive is not None:
        checks.append(
            ClaimCheck(
                "adaptive SLA hit-rate",
                f"{adaptive.sla_hit_rate:.3f}",
                "≥ 0.95",
                adaptive.sla_hit_rate >= 0.95,
            )
        )
    if adaptive is not None and static is not None:
        checks.append(
            ClaimCheck(
                "adaptive SLA hit-rate vs static",
                f"{adaptive.sla_hit_rate:.3f} vs {static.sla_hit_rate:.3f}",
                "≥ static + 0.20",
                adaptive.sla_hit_rate >= static.sla_hit_rate + 0.20 - 1e-9,
            )
        )
        checks.append(_p95_ratio("adaptive p95 vs static p95", adaptive, static, 0.6))
    if adaptive is not None:
        checks.append(ClaimCheck("adaptive failed requests", str(adaptive.failed), "0", adaptive.failed == 0))
    for mode, result in results.items():
        checks.append(
            ClaimCheck(
                f"{mode} privacy violations",
                str(result.privacy_violations),
                "0",
                result.privacy_violations == 0,
            )
        )
    if adaptive is not None and oracle is not None:
        checks.append(_p95_ratio("adaptive p95 vs oracle p95 (bound)", adaptive, oracle, 1.15))
    return checks


def _p95_ratio(claim: str, mine: ModeResult, other: ModeResult, at_most: float) -> ClaimCheck:
    a, b = mine.latency_ms.p95, other.latency_ms.p95
    if a is None or b is None or b <= 0:
        return ClaimCheck(claim, "no completed requests to compare", f"≤ {at_most:g}×", False)
    ratio = a / b
    return ClaimCheck(claim, f"{a:.0f} / {b:.0f} ms = {ratio:.2f}×", f"≤ {at_most:g}×", ratio <= at_most)
