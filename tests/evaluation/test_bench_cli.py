"""`edgesplit bench`: misuse exits 2 with one line before anything starts; a run writes the four outputs.

The cluster run itself is the runner's (tested end to end in test_runner_e2e.py); here it is replaced
by a stand-in so the shell's own job — validate, drive, write, print — is what is under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgesplit.cli.bench_cmd import PhaseTimes
from edgesplit.cli.main import app
from edgesplit.evaluation import runner
from edgesplit.evaluation.load import RequestRecord
from edgesplit.evaluation.metrics import summarize
from edgesplit.evaluation.report import ResultsFile, Timeline

SCENARIO = """\
name: cli-test
model: builtin:llama-tiny
nodes:
  - {id: device, trusted: true, source: true}
  - {id: mec1, trusted: true}
  - {id: cloud}
workload: {rate_rps: 2, duration_s: 10, seed: 1}
events:
  - {at_s: 4, kind: link, a: device, b: mec1, bandwidth_mbps: 5}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def invoke(*args: str) -> Any:
    """In-process run of `edgesplit bench` (fast); stderr kept apart from stdout."""
    return CliRunner().invoke(app, ["bench", *args])


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.mark.parametrize(
    ("edit", "modes", "expected"),
    [
        (
            ("bandwidth_mbps: 5", "bandwidth_mbps: 5}\n  - {at_s: 12, kind: node_kill, node: mec1"),
            "static",
            "at_s",
        ),
        (("b: mec1", "b: mec9"), "static", "unknown node 'mec9'"),
        (("rate_rps: 2", "rate_rps: -2"), "static", "workload.rate_rps"),
        (None, "static,turbo", "unknown mode 'turbo'"),
    ],
)
def test_misuse_exits_2_with_one_line(
    scenario_file: Path, tmp_path: Path, edit: tuple[str, str] | None, modes: str, expected: str
) -> None:
    if edit is not None:
        scenario_file.write_text(SCENARIO.replace(*edit))
    result = invoke(str(scenario_file), "--out", str(tmp_path / "out"), "--modes", modes)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesplit: error:") and expected in lines[0]
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_missing_scenario_and_out_that_is_a_file_exit_2(tmp_path: Path, scenario_file: Path) -> None:
    missing = run_cli(str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out"))  # the real console script
    assert missing.returncode == 2 and "cannot read scenario file" in missing.stderr
    assert "Traceback" not in missing.stderr
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    taken = invoke(str(scenario_file), "--out", str(a_file))
    assert taken.exit_code == 2 and "is not a folder" in taken.stderr
    assert invoke(str(scenario_file)).exit_code == 2  # --out is required


def fake_records(latency_ms: float, n: int = 20) -> list[RequestRecord]:
    nodes = {0: ("device",), 1: ("device",), 2: ("mec1",)}
    return [
        RequestRecord(
            i, "high", i * 0.5, i * 0.5 + 0.01, i * 0.5 + latency_ms / 1000, 16, "ok", None, (1,), nodes
        )
        for i in range(n)
    ]


def test_a_run_writes_results_report_and_plots(
    scenario_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_run_scenario(
        scenario: Any, modes: list[str], out_dir: Path, *, progress: Any, narrate: Any
    ) -> Any:
        calls.append((scenario.name, modes))
        results, timelines = {}, {}
        for mode, latency in zip(modes, (900.0, 150.0), strict=True):
            progress(mode, "starting", 0, 20)
            progress(mode, "load", 20, 20)
            narrate(mode, 4.0, "event: link device-mec1 5 Mbit/s")
            progress(mode, "done", 20, 20)
            records = fake_records(latency)
            results[mode] = summarize(
                records,
                budget_ms=scenario.sla.budget_ms,
                duration_s=10,
                utilization_samples=[0.5],
                reconfigurations=0,
                trusted_nodes=scenario.trusted_nodes(),
                privacy_blocks=[0, 1],
            )
            timelines[mode] = Timeline(records, [(4.0, "link")], [])
        return results, timelines

    monkeypatch.setattr(runner, "run_scenario", fake_run_scenario)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["bench", str(scenario_file), "--out", str(out), "--modes", "static,adaptive"]
    )
    assert result.exit_code == 0, result.output
    assert calls == [("cli-test", ["static", "adaptive"])]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["latency_cdf.png", "report.md", "requests.jsonl", "results.json", "timeline.png"]
    assert "2 req/s for 10 s (seed 1)" in (out / "report.md").read_text()
    doc = ResultsFile.model_validate_json((out / "results.json").read_text())
    assert doc.scenario == "cli-test"
    assert doc.modes["static"].sla_hit_rate == 0.0 and doc.modes["adaptive"].sla_hit_rate == 1.0
    assert "SLA hit-rate" in result.output and "event: link device-mec1" in result.output
    assert "adaptive SLA hit-rate: 1.000 (target ≥ 0.95) — holds" in result.output
    assert "adaptive p95 vs static p95: 150 / 900 ms = 0.17× (target ≤ 0.6×) — holds" in result.output
    assert str(out / "results.json") in result.output.replace("\n", "")
    timing = next(line for line in result.output.splitlines() if line.startswith("time: "))
    assert "static: starting" in timing and "adaptive: starting" in timing and "report" in timing


def test_phase_times_add_up_each_modes_phases_from_the_progress_calls() -> None:
    now = [100.0]
    phases = PhaseTimes(clock=lambda: now[0])

    def at(t: float, mode: str, phase: str) -> None:
        now[0] = 100.0 + t
        phases.enter(mode, phase)

    at(0, "static", "starting")
    at(20, "static", "warm-up")
    at(22, "static", "load")
    at(30, "static", "load")  # progress within a phase: not a new phase
    at(67, "static", "drain")
    at(70, "static", "stopping")
    at(72, "static", "done")
    at(72, "adaptive", "starting")
    at(90, "adaptive", "done")
    assert phases.seconds == {
        "static": {"starting": 20, "warm-up": 2, "load": 45, "drain": 3, "stopping": 2},
        "adaptive": {"starting": 18},
    }
    now[0] = 195.0
    line = phases.summary({"report": 4.0})
    assert line.startswith("time: static: starting 20.0 s, warm-up 2.0 s, load 45.0 s")
    assert line.endswith("| adaptive: starting 18.0 s | report 4.0 s | total 95.0 s")
