"""The outputs of `edgesplit bench`: results.json (DESIGN §4.4), report.md (the paper's Table 5 side by
side per mode, its claims checked), two plots (the paper's Fig. 3 latency CDF; latency over time with
events) and requests.jsonl (every request, so any figure can be recomputed).

The data behind every plot comes from pure functions, so tests check numbers, not pixels.
Matplotlib runs headless (Agg) and is imported only when a plot is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from edgesplit.evaluation.claims import check_claims
from edgesplit.evaluation.load import RequestRecord
from edgesplit.evaluation.metrics import ModeResult
from edgesplit.evaluation.scenario import Scenario

MODE_ORDER = ("single", "cloud", "static", "adaptive", "oracle")
"""Columns in this order; any other mode follows, alphabetically."""
MAX_MARKS = 40
"""Events and plan changes listed per mode in report.md (the timeline plot shows them all)."""

PAPER_TABLE5 = {
    "latency": ("500–1000 ms", "100–300 ms"),
    "throughput": ("~1 req/s", "~5 req/s"),
    "utilization": ("50–60 %", "80–95 %"),
    "sla": ("60–70 %", "95–99 %"),
    "failures": ("5–10 per h", "0–2 per h"),
    "privacy": ("moderate", "high"),
}
"""The paper's claimed (static, adaptive) ranges: medians of other studies, not measured here."""


@dataclass(frozen=True)
class Timeline:
    """One mode's run over time: its requests, the injected events and the plans committed."""

    records: Sequence[RequestRecord]
    events: Sequence[tuple[float, str]]
    """(seconds after load start, label) of each injected disturbance."""
    reconfigurations: Sequence[tuple[float, str]]
    """(seconds after load start, label) of each plan committed during the run."""


class ResultsFile(BaseModel):
    """results.json: validates the exact §4.4 shape."""

    model_config = ConfigDict(extra="forbid")
    scenario: str
    modes: dict[str, ModeResult]


@dataclass(frozen=True)
class CdfSeries:
    """Latency CDF of one mode: sorted latencies (ms) of completed requests and the share of *offered*
    requests done by then, so failures keep the curve below 1."""

    latency_ms: tuple[float, ...]
    fraction: tuple[float, ...]


@dataclass(frozen=True)
class TimelineSeries:
    """Latency over time of one mode: per completed request its send time and latency; failures apart."""

    send_s: tuple[float, ...]
    latency_ms: tuple[float, ...]
    failed_at_s: tuple[float, ...]


def ordered_modes(modes: Sequence[str]) -> list[str]:
    known = [m for m in MODE_ORDER if m in modes]
    return known + sorted(m for m in modes if m not in MODE_ORDER)


def results_document(scenario_name: str, results: dict[str, ModeResult]) -> dict[str, object]:
    """The results.json content: ``{"scenario": name, "modes": {mode: figures}}``."""
    doc = ResultsFile(scenario=scenario_name, modes={m: results[m] for m in ordered_modes(list(results))})
    return doc.model_dump(mode="json")


def cdf_series(records: Sequence[RequestRecord]) -> CdfSeries:
    done = sorted(r.latency_s * 1000.0 for r in records if r.status == "ok")
    offered = len(records)
    return CdfSeries(tuple(done), tuple((i + 1) / offered for i in range(len(done))))


def timeline_series(records: Sequence[RequestRecord]) -> TimelineSeries:
    ok = sorted((r for r in records if r.status == "ok"), key=lambda r: r.send_s)
    failed = sorted(r.send_s for r in records if r.status != "ok")
    return TimelineSeries(tuple(r.send_s for r in ok), tuple(r.latency_s * 1000.0 for r in ok), tuple(failed))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


Row = tuple[str, Callable[[ModeResult], str], tuple[str, str]]


def _table5_rows(budget_ms: float) -> list[Row]:
    """(metric, how to print it for one mode, the paper's (static, adaptive) claim)."""
    none = ("", "")
    return [
        ("End-to-end latency p50 (ms)", lambda r: _ms(r.latency_ms.p50), PAPER_TABLE5["latency"]),
        ("End-to-end latency p95 (ms)", lambda r: _ms(r.latency_ms.p95), ("", "95 % < 300 ms")),
        ("End-to-end latency p99 (ms)", lambda r: _ms(r.latency_ms.p99), none),
        ("Time to first token p50 (ms)", lambda r: _ms(r.ttft_ms.p50), none),
        ("Throughput (requests/s)", lambda r: f"{r.throughput_rps:.2f}", PAPER_TABLE5["throughput"]),
        ("Tokens/s", lambda r: f"{r.tokens_per_s:.1f}", none),
        ("Node utilisation (mean)", lambda r: _pct(r.utilization_mean), PAPER_TABLE5["utilization"]),
        (f"SLA hit-rate ({budget_ms:g} ms budget)", lambda r: _pct(r.sla_hit_rate), PAPER_TABLE5["sla"]),
        (
            "Failed requests (per hour)",
            lambda r: f"{r.failed} ({r.failures_per_hour:.0f}/h)",
            PAPER_TABLE5["failures"],
        ),
        ("Privacy violations", lambda r: str(r.privacy_violations), PAPER_TABLE5["privacy"]),
        ("Reconfigurations", lambda r: str(r.reconfigurations), ("0", "")),
        ("Requests offered / completed", lambda r: f"{r.requests} / {r.completed}", none),
    ]


def report_table(results: dict[str, ModeResult]) -> list[list[str]]:
    """Table 5 side by side: a header row, then one row per metric (modes, then the paper's claims)."""
    modes = ordered_modes(list(results))
    budget = next(iter(results.values())).sla_budget_ms if results else 400.0
    table = [["Metric", *modes, "paper: static", "paper: adaptive"]]
    for name, show, paper in _table5_rows(budget):
        table.append([name, *(show(results[m]) for m in modes), *paper])
    return table


def report_markdown(
    scenario_name: str,
    results: dict[str, ModeResult],
    timelines: dict[str, Timeline] | None = None,
    scenario: Scenario | None = None,
) -> str:
    """report.md: the side-by-side table, the issue's claims checked, and what happened in the run."""
    table = report_table(results)
    lines = [
        f"# edgesplit bench: {scenario_name}",
        "",
        "Measured by the harness on the running local cluster (wall-clock, open-loop load, the same request "
        "stream in every mode). The last two columns are the paper's claimed ranges (Table 5, medians of "
        "other studies), shown for comparison only.",
        "",
        "| " + " | ".join(table[0]) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(table[0]) - 3) + ["---", "---"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if "oracle" in results:
        lines += [
            "",
            "`oracle` re-plans at once from the true emulated conditions: a bound, not a mode to deploy.",
        ]
    checks = check_claims(results)
    if checks:
        lines += ["", "## The paper's claims on this run", "", "| claim | measured | target | holds |"]
        lines += ["|---|---|---|---|"]
        lines += [
            f"| {c.claim} | {c.measured} | {c.target} | {'yes' if c.holds else '**no**'} |" for c in checks
        ]
    lines += _run_section(timelines or {}, scenario)
    lines += ["", "Plots: `latency_cdf.png` (Fig. 3: CDF per mode, SLA budget marked), `timeline.png`."]
    lines += ["Every request of every mode: `requests.jsonl`.", ""]
    return "\n".join(lines)


def _run_section(timelines: dict[str, Timeline], scenario: Scenario | None) -> list[str]:
    """The workload, the events as applied, and each mode's plan changes, with their times."""
    lines = ["", "## The run"]
    if scenario is not None:
        w = scenario.workload
        lines += [
            "",
            f"{w.arrivals} arrivals at {w.rate_rps:g} req/s for {w.duration_s:g} s (seed {w.seed}), "
            f"{w.prompt_tokens} prompt and {w.output_tokens} output tokens, "
            f"{100 * w.privacy_high_fraction:g} % tagged `privacy: high`; SLA {scenario.sla.budget_ms:g} ms.",
        ]
    for mode in ordered_modes(list(timelines)):
        timeline = timelines[mode]
        marks = [(t, f"event: {label}") for t, label in timeline.events]
        marks += [(t, f"new plan: {label}") for t, label in timeline.reconfigurations]
        lag = _send_lag(timeline.records)
        lines += ["", f"**{mode}**: {lag}" + ("; no events, no plan changes" if not marks else "")]
        lines += [f"- t = {t:.1f} s — {text}" for t, text in sorted(marks)[:MAX_MARKS]]
        if len(marks) > MAX_MARKS:
            lines.append(f"- … and {len(marks) - MAX_MARKS} more")
    return lines


def _send_lag(records: Sequence[RequestRecord]) -> str:
    """How late the harness itself sent requests (included in every latency above)."""
    if not records:
        return "no requests"
    lags = sorted(r.sent_late_s * 1000.0 for r in records)
    p99 = lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))]
    return f"client send lag p99 {p99:.0f} ms, max {lags[-1]:.0f} ms (counted inside the latencies)"


def plot_latency_cdf(path: Path, timelines: dict[str, Timeline], budget_ms: float) -> dict[str, CdfSeries]:
    """The paper's Fig. 3: one latency CDF per mode and the SLA budget; returns the plotted data."""
    series = {m: cdf_series(timelines[m].records) for m in ordered_modes(list(timelines))}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, data in series.items():
        ax.step([0.0, *data.latency_ms], [0.0, *data.fraction], where="post", label=mode)
    ax.axvline(budget_ms, color="black", linestyle="--", linewidth=1, label=f"SLA {budget_ms:g} ms")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("share of requests offered")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Latency CDF per mode")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return series


def plot_timeline(path: Path, timelines: dict[str, Timeline], budget_ms: float) -> dict[str, TimelineSeries]:
    """Latency over time per mode (one panel each), events and reconfigurations marked; returns the data."""
    modes = ordered_modes(list(timelines))
    series = {m: timeline_series(timelines[m].records) for m in modes}
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(modes) or 1,
        1,
        figsize=(9, 2.2 * max(1, len(modes)) + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    top = max([budget_ms, *(ms for d in series.values() for ms in d.latency_ms)])
    for row, (ax, mode) in enumerate(zip(axes[:, 0], modes, strict=False)):
        data = series[mode]
        ax.plot(data.send_s, data.latency_ms, ".", markersize=3, label="completed")
        if data.failed_at_s:
            ax.plot(data.failed_at_s, [top] * len(data.failed_at_s), "x", color="red", label="failed")
        ax.axhline(budget_ms, color="black", linestyle="--", linewidth=1)
        for t_s, label in timelines[mode].events:
            ax.axvline(t_s, color="tab:red", alpha=0.6, linewidth=1)
            if row == 0:  # the same events hit every mode: name them once, above the first panel
                ax.annotate(
                    label,
                    (t_s, 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    rotation=20,
                    xytext=(2, 3),
                    textcoords="offset points",
                    color="tab:red",
                )
        for t_s, _label in timelines[mode].reconfigurations:
            ax.axvline(t_s, color="tab:green", alpha=0.6, linestyle=":", linewidth=1.5)
        ax.set_ylabel(f"{mode}\nlatency (ms)")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("request send time (s after load start); red: event, green dotted: new plan")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return series


def write_outputs(
    out_dir: Path,
    scenario_name: str,
    results: dict[str, ModeResult],
    timelines: dict[str, Timeline],
    scenario: Scenario | None = None,
) -> dict[str, Path]:
    """Write results.json, report.md, latency_cdf.png, timeline.png and requests.jsonl; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = next(iter(results.values())).sla_budget_ms if results else 400.0
    paths = {
        "results": out_dir / "results.json",
        "report": out_dir / "report.md",
        "latency_cdf": out_dir / "latency_cdf.png",
        "timeline": out_dir / "timeline.png",
        "requests": out_dir / "requests.jsonl",
    }
    paths["results"].write_text(json.dumps(results_document(scenario_name, results), indent=2) + "\n")
    paths["report"].write_text(report_markdown(scenario_name, results, timelines, scenario))
    plot_latency_cdf(paths["latency_cdf"], timelines, budget)
    plot_timeline(paths["timeline"], timelines, budget)
    with paths["requests"].open("w") as out:
        for mode in ordered_modes(list(timelines)):
            for r in timelines[mode].records:
                out.write(json.dumps(request_line(mode, r)) + "\n")
    return paths


def request_line(mode: str, r: RequestRecord) -> dict[str, object]:
    """One request as a JSON object, so every figure can be recomputed from the raw records."""
    return {
        "mode": mode,
        **{k: v for k, v in asdict(r).items() if k != "nodes_by_block"},
        "latency_ms": round(r.latency_s * 1000.0, 3),
        "nodes_by_block": None
        if r.nodes_by_block is None
        else {str(b): n for b, n in r.nodes_by_block.items()},
    }


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
