"""summarize(): the §4.4 figures from hand-built records; results.json schema; report and plot data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgesplit.evaluation.claims import check_claims
from edgesplit.evaluation.load import RequestRecord
from edgesplit.evaluation.metrics import ModeResult, summarize
from edgesplit.evaluation.report import (
    ResultsFile,
    Timeline,
    cdf_series,
    plot_latency_cdf,
    plot_timeline,
    report_markdown,
    report_table,
    results_document,
    timeline_series,
    write_outputs,
)

TRUSTED = frozenset({"device", "mec1"})
PRIVACY_BLOCKS = [0, 1, 5]
SAFE = {0: ("device",), 1: ("device",), 2: ("mec1",), 3: ("cloud",), 4: ("cloud",), 5: ("device",)}

# DESIGN §4.4, copied from the contract: results.json must have exactly these keys.
MODE_KEYS = {
    "requests", "completed", "failed", "latency_ms", "ttft_ms", "throughput_rps", "tokens_per_s",
    "sla_budget_ms", "sla_hit_rate", "utilization_mean", "reconfigurations", "privacy_violations",
    "failures_per_hour",
}  # fmt: skip


def record(
    index: int,
    send_s: float,
    latency_ms: float,
    status: str = "ok",
    privacy: str = "high",
    nodes: dict[int, tuple[str, ...]] | None = SAFE,
    tokens: int = 5,
) -> RequestRecord:
    end_s = send_s + latency_ms / 1000
    return RequestRecord(
        index=index,
        privacy=privacy,
        send_s=send_s,
        first_token_s=send_s + 0.05 if status == "ok" else None,
        end_s=end_s,
        tokens=tokens if status == "ok" else 0,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "boom",
        epochs=(1,) if nodes is not None else (),
        nodes_by_block=nodes if status == "ok" else None,
    )


def mixed_records() -> list[RequestRecord]:
    ok = [record(i, float(i), 100.0 * (i + 1)) for i in range(8)]  # 100..800 ms, the last ends at 7.8 s
    return [
        *ok,
        record(8, 8.0, 2500.0, "error"),
        record(9, 9.0, 1800.0, "timeout"),
    ]  # the last ends at 10.8 s


def summarize_mixed(records: list[RequestRecord] | None = None) -> ModeResult:
    return summarize(
        mixed_records() if records is None else records,
        budget_ms=400,
        duration_s=10,
        utilization_samples=[0.2, 0.4, 0.6],
        reconfigurations=3,
        trusted_nodes=TRUSTED,
        privacy_blocks=PRIVACY_BLOCKS,
    )


def test_summarize_counts_every_offered_request() -> None:
    result = summarize_mixed()
    assert (result.requests, result.completed, result.failed) == (10, 8, 2)
    assert result.latency_ms.p50 == pytest.approx(450.0)
    assert result.latency_ms.mean == pytest.approx(450.0)
    assert result.latency_ms.p95 == pytest.approx(765.0)  # rank 0.95 * 7 = 6.65 between 700 and 800
    assert result.latency_ms.p99 == pytest.approx(793.0)
    assert result.ttft_ms.p50 == pytest.approx(50.0) and result.ttft_ms.p95 == pytest.approx(50.0)
    # 100, 200, 300 and 400 ms meet the 400 ms budget: 4 of the 10 offered (failures are misses)
    assert result.sla_hit_rate == pytest.approx(0.4)
    assert result.sla_budget_ms == 400
    # the run lasts until its last answer (10.8 s), longer than the 10 s of arrivals
    assert result.throughput_rps == pytest.approx(8 / 10.8)
    assert result.tokens_per_s == pytest.approx(40 / 10.8)
    assert result.failures_per_hour == pytest.approx(2 * 3600 / 10.8)
    assert result.utilization_mean == pytest.approx(0.4)
    assert result.reconfigurations == 3
    assert result.privacy_violations == 0


def test_privacy_violations_are_privacy_high_requests_on_untrusted_nodes() -> None:
    leaked = SAFE | {1: ("cloud",)}
    moved = SAFE | {5: ("cloud", "device")}  # the head ran on the cloud for part of the request
    records = [
        record(0, 0.0, 100, nodes=leaked),
        record(1, 0.5, 100, nodes=moved),
        record(2, 1.0, 100, privacy="none", nodes=leaked),  # allowed: the request did not ask for privacy
        record(3, 1.5, 100, nodes=None),  # completed without saying where: not shown compliant
        record(4, 2.0, 100, status="error", nodes=None),  # never ran
        record(5, 2.5, 100, nodes=SAFE | {3: ("cloud",)}),  # a non-privacy block on the cloud is fine
    ]
    assert summarize_mixed(records).privacy_violations == 3


def test_no_completed_request_gives_null_latencies_and_zero_hits() -> None:
    records = [record(i, float(i), 500, "error") for i in range(3)]
    result = summarize_mixed(records)
    assert result.completed == 0 and result.failed == 3
    assert result.latency_ms.p50 is None and result.latency_ms.mean is None and result.ttft_ms.p95 is None
    assert result.sla_hit_rate == 0.0 and result.throughput_rps == 0.0
    assert summarize_mixed([]).requests == 0


def test_results_json_has_exactly_the_design_shape(tmp_path: Path) -> None:
    results = {"adaptive": summarize_mixed(), "static": summarize_mixed(mixed_records()[:9])}
    doc = results_document("mec", results)
    assert list(doc) == ["scenario", "modes"] and doc["scenario"] == "mec"
    modes = doc["modes"]
    assert isinstance(modes, dict) and list(modes) == ["static", "adaptive"]  # paper order, not dict order
    for figures in modes.values():
        assert set(figures) == MODE_KEYS
        assert set(figures["latency_ms"]) == {"p50", "p95", "p99", "mean"}
        assert set(figures["ttft_ms"]) == {"p50", "p95"}
        assert all(
            isinstance(figures[k], int) for k in ("requests", "completed", "failed", "reconfigurations")
        )
        assert 0.0 <= figures["sla_hit_rate"] <= 1.0
    ResultsFile.model_validate_json(json.dumps(doc))
    bad = json.loads(json.dumps(doc))
    bad["modes"]["static"]["extra"] = 1
    with pytest.raises(ValidationError):
        ResultsFile.model_validate(bad)
    del bad["modes"]["static"]["extra"], bad["modes"]["static"]["failed"]
    with pytest.raises(ValidationError):
        ResultsFile.model_validate(bad)


def test_cdf_counts_failures_in_the_denominator() -> None:
    records = [record(0, 0, 300), record(1, 1, 100), record(2, 2, 900, "timeout"), record(3, 3, 200)]
    series = cdf_series(records)
    assert series.latency_ms == pytest.approx((100, 200, 300))
    assert series.fraction == pytest.approx((0.25, 0.5, 0.75))


def test_timeline_series_orders_by_send_time_and_keeps_failures_apart() -> None:
    records = [record(1, 2.0, 300), record(0, 1.0, 100), record(2, 1.5, 900, "error")]
    series = timeline_series(records)
    assert series.send_s == (1.0, 2.0)
    assert series.latency_ms == pytest.approx((100, 300))
    assert series.failed_at_s == (1.5,)


def test_report_table_puts_modes_side_by_side_with_the_paper_claims() -> None:
    adaptive = summarize_mixed([record(i, float(i), 200) for i in range(20)])
    static = summarize_mixed(mixed_records())
    table = report_table({"adaptive": adaptive, "static": static})
    assert table[0] == ["Metric", "static", "adaptive", "paper: static", "paper: adaptive"]
    rows = {row[0]: row[1:] for row in table[1:]}
    assert rows["SLA hit-rate (400 ms budget)"] == ["40.0 %", "100.0 %", "60–70 %", "95–99 %"]
    assert rows["End-to-end latency p50 (ms)"] == ["450", "200", "500–1000 ms", "100–300 ms"]
    assert rows["Failed requests (per hour)"][:2] == ["2 (667/h)", "0 (0/h)"]
    text = report_markdown("mec", {"adaptive": adaptive, "static": static, "oracle": adaptive})
    assert "| SLA hit-rate (400 ms budget) | 40.0 % | 100.0 % | 100.0 % | 60–70 % | 95–99 % |" in text
    assert "a bound" in text


def timelines() -> dict[str, Timeline]:
    static = Timeline(mixed_records(), [(3.0, "link device-mec1 10 Mbit/s")], [])
    adaptive = Timeline([record(i, float(i), 150) for i in range(10)], [(3.0, "link")], [(3.4, "epoch 2")])
    return {"static": static, "adaptive": adaptive}


def test_plots_are_pngs_drawn_from_the_series(tmp_path: Path) -> None:
    lines = timelines()
    cdf = plot_latency_cdf(tmp_path / "cdf.png", lines, 400)
    assert list(cdf) == ["static", "adaptive"]
    assert cdf["static"] == cdf_series(lines["static"].records)
    assert cdf["adaptive"].fraction[-1] == 1.0 and cdf["static"].fraction[-1] == pytest.approx(0.8)
    over_time = plot_timeline(tmp_path / "timeline.png", lines, 400)
    assert over_time["static"].failed_at_s == (8.0, 9.0)
    for name in ("cdf.png", "timeline.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_write_outputs_writes_the_report_files(tmp_path: Path) -> None:
    lines = timelines()
    results = {
        mode: summarize(
            t.records,
            budget_ms=400,
            duration_s=10,
            utilization_samples=[],
            reconfigurations=len(t.reconfigurations),
            trusted_nodes=TRUSTED,
            privacy_blocks=PRIVACY_BLOCKS,
        )
        for mode, t in lines.items()
    }
    paths = write_outputs(tmp_path / "out", "mec", results, lines)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["latency_cdf.png", "report.md", "requests.jsonl", "results.json", "timeline.png"]
    lines_out = [json.loads(line) for line in paths["requests"].read_text().splitlines()]
    expected_order = [("static", i) for i in range(10)] + [("adaptive", i) for i in range(10)]
    assert [(x["mode"], x["index"]) for x in lines_out] == expected_order
    assert lines_out[8]["status"] == "error" and lines_out[10]["latency_ms"] == pytest.approx(150.0)
    assert lines_out[0]["nodes_by_block"]["3"] == ["cloud"]
    doc = ResultsFile.model_validate_json(paths["results"].read_text())
    assert doc.modes["adaptive"].sla_hit_rate == 1.0 and doc.modes["adaptive"].reconfigurations == 1
    assert doc.modes["static"].sla_hit_rate == pytest.approx(0.4)
    report = paths["report"].read_text()
    assert "| Reconfigurations | 0 | 1 |" in report
    assert "- t = 3.0 s — event: link device-mec1 10 Mbit/s" in report
    assert "- t = 3.4 s — new plan: epoch 2" in report
    assert "**static**: client send lag p99 0 ms, max 0 ms" in report


def test_claims_are_checked_against_the_issue_thresholds() -> None:
    static = summarize_mixed()  # SLA 0.4, p95 765 ms, 2 failed
    good = summarize_mixed([record(i, float(i), 200) for i in range(20)])  # SLA 1.0, p95 200 ms
    slow_oracle = summarize_mixed([record(i, float(i), 180) for i in range(20)])
    checks = {c.claim: c for c in check_claims({"static": static, "adaptive": good, "oracle": slow_oracle})}
    assert checks["adaptive SLA hit-rate"].holds
    assert checks["adaptive SLA hit-rate vs static"].holds
    assert checks["adaptive p95 vs static p95"].measured == "200 / 765 ms = 0.26×"
    assert checks["adaptive p95 vs static p95"].holds
    assert checks["adaptive failed requests"].holds
    assert checks["adaptive p95 vs oracle p95 (bound)"].holds  # 200 / 180 = 1.11 <= 1.15
    assert {k for k in checks if k.endswith("privacy violations")} == {
        "static privacy violations",
        "adaptive privacy violations",
        "oracle privacy violations",
    }
    swapped = {c.claim: c for c in check_claims({"static": good, "adaptive": static})}
    assert not swapped["adaptive SLA hit-rate"].holds
    assert not swapped["adaptive SLA hit-rate vs static"].holds
    assert not swapped["adaptive p95 vs static p95"].holds
    assert not swapped["adaptive failed requests"].holds
    leaky = summarize_mixed([record(0, 0.0, 100, nodes=SAFE | {0: ("cloud",)})])
    assert not {c.claim: c for c in check_claims({"cloud": leaky})}["cloud privacy violations"].holds
    assert [c.claim for c in check_claims({"static": static})] == ["static privacy violations"]
    text = report_markdown("mec", {"static": good, "adaptive": static})
    assert "| adaptive SLA hit-rate | 0.400 | ≥ 0.95 | **no** |" in text


def test_report_states_how_late_the_harness_itself_sent() -> None:
    import dataclasses

    records = [dataclasses.replace(record(i, float(i), 100), sent_late_s=i / 1000) for i in range(101)]
    results = {"adaptive": summarize_mixed(records)}
    text = report_markdown("mec", results, {"adaptive": Timeline(records, [], [])})
    assert "**adaptive**: client send lag p99 99 ms, max 100 ms" in text
    assert "no events, no plan changes" in text
