"""`edgesplit sim`: misuse exits 2 with one line before anything runs; a run prints Table 5 and writes
results.json in the §4.4 shape (model block costs from the factory, so no checkpoint is built)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sim_world import COLLAPSE, SCENARIO, make_blocks
from typer.testing import CliRunner

from edgesplit.cli.main import app
from edgesplit.evaluation.report import ResultsFile
from edgesplit.sim import run as sim_run


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    body = "\n" + "".join(f"  - {e}\n" for e in COLLAPSE)
    path.write_text(SCENARIO.replace("DURATION", "15").replace("EVENTS", body))
    return path


def invoke(*args: str) -> Any:
    """In-process `edgesplit sim` (a wide terminal, so Rich does not shorten the table's rows)."""
    return CliRunner().invoke(app, ["sim", *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--modes", "static,turbo"), "unknown mode 'turbo'"),
        (("--modes", "adaptive,adaptive"), "listed twice"),
        (("--nodes", "3"), "already has 4 nodes"),
        (("--nodes", "0"), "positive number of nodes"),
    ],
)
def test_misuse_exits_2_with_one_line(
    scenario_file: Path, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = invoke(str(scenario_file), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesplit: error:") and expected in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_scenario_missing_file_and_out_file_exit_2(scenario_file: Path, tmp_path: Path) -> None:
    scenario_file.write_text(scenario_file.read_text().replace("rate_rps: 2", "rate_rps: -2"))
    bad = invoke(str(scenario_file))
    assert bad.exit_code == 2 and "workload.rate_rps" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", "sim", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "cannot read scenario file" in missing.stderr
    assert "Traceback" not in missing.stderr
    taken = tmp_path / "taken"
    taken.write_text("x")
    scenario_file.write_text(scenario_file.read_text().replace("rate_rps: -2", "rate_rps: 2"))
    result = invoke(str(scenario_file), "--out", str(taken))
    assert result.exit_code == 2 and "is not a folder" in result.stderr


def test_a_run_prints_table_5_and_writes_results(
    scenario_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_run, "model_blocks", lambda scenario, base_dir=None: make_blocks())
    out = tmp_path / "out"
    result = invoke(str(scenario_file), "--modes", "static,adaptive", "--out", str(out), "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "End-to-end latency p50 (ms)" in result.stdout and "Reconfigurations" in result.stdout
    doc = ResultsFile.model_validate_json((out / "results.json").read_text())
    assert doc.scenario == "sim-test" and list(doc.modes) == ["static", "adaptive"]
    assert doc.modes["static"].reconfigurations == 0
    assert doc.modes["adaptive"].reconfigurations >= 1
    assert doc.modes["adaptive"].requests == doc.modes["static"].requests > 0
    report = (out / "report.md").read_text()
    assert report.startswith("# edgesplit sim: sim-test") and "Measured by the harness" not in report


def test_scaled_runs_with_the_same_seed_write_identical_results(
    scenario_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_run, "model_blocks", lambda scenario, base_dir=None: make_blocks())
    texts = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = invoke(
            str(scenario_file), "--modes", "adaptive", "--nodes", "12", "--seed", "5", "--out", str(out)
        )
        assert result.exit_code == 0, result.output
        assert "12 nodes" in result.stdout
        texts.append((out / "results.json").read_text())
    assert texts[0] == texts[1]
    assert ResultsFile.model_validate_json(texts[0]).modes["adaptive"].requests > 0
