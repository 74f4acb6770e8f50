"""`edgesplit demo`: the packaged scenario, misuse, and (slow) the short run end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgesplit.cli.demo_cmd import DEMO_MODES, SHORT_S, demo_scenario


def test_the_demo_scenario_is_packaged_and_its_short_form_keeps_every_event_inside_the_run() -> None:
    full = demo_scenario()
    assert full.workload.duration_s == 45 and len(full.events) == 3
    short = demo_scenario(short=True)
    assert short.workload.duration_s == SHORT_S
    assert [e.kind for e in short.events] == [e.kind for e in full.events]
    assert all(0 < e.at_s < SHORT_S for e in short.events)
    assert [e.at_s for e in short.events] == sorted(e.at_s for e in short.events)


def test_demo_with_an_out_path_that_is_a_file_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", "demo", "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--out" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_short_demo_runs_static_and_adaptive_narrates_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgesplit.cli.main", "demo", "--short", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        text, _ = proc.communicate(timeout=840)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, text[-3000:]
    assert "event: link device~mec1" in text and "event: mec1 load 70%" in text
    assert "measured here vs the paper" in text
    results = json.loads((out / "results.json").read_text())
    assert list(results["modes"]) == DEMO_MODES
    assert results["modes"]["static"]["requests"] == results["modes"]["adaptive"]["requests"] > 0
    assert results["modes"]["static"]["reconfigurations"] == 0
    for name in ("report.md", "latency_cdf.png", "timeline.png"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in text
