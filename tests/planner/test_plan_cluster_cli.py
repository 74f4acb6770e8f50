"""`edgesplit plan --cluster`: a placement preview from declared facts and the model's block costs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from edgesplit.cli.main import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
runner = CliRunner()


def _plan(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["plan", *args])
    return result.exit_code, result.stdout


def test_cluster_preview_prints_the_plan_json_and_keeps_privacy_blocks_trusted() -> None:
    code, out = _plan("--cluster", str(EXAMPLE), "--solver", "exact", "--json")
    assert code == 0, out
    plan = json.loads(out.strip().splitlines()[-1])
    n_blocks = len(plan["assignment"])
    assert [b for s in plan["segments"] for b in range(s["start"], s["end"])] == list(range(n_blocks))
    # the file marks embedding, layer 0 and the head privacy-critical; "cloud" is its untrusted node
    assert all(plan["assignment"][b] != "cloud" for b in (0, 1, n_blocks - 1))
    assert plan["cost"]["privacy"] == 0 and plan["optimal"] is True


def test_the_emulation_section_does_not_change_the_preview(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("emulation", None)
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(data))
    with_emulation = json.loads(_plan("--cluster", str(EXAMPLE), "--json")[1].strip().splitlines()[-1])
    without = json.loads(_plan("--cluster", str(bare), "--json")[1].strip().splitlines()[-1])
    assert with_emulation["assignment"] == without["assignment"]
    assert with_emulation["cost"] == without["cost"]


def test_privacy_none_may_use_the_untrusted_node() -> None:
    code, out = _plan("--cluster", str(EXAMPLE), "--privacy", "none", "--json")
    assert code == 0, out
    assert "assignment" in json.loads(out.strip().splitlines()[-1])


def test_table_without_json() -> None:
    code, out = _plan("--cluster", str(EXAMPLE))
    assert code == 0, out
    assert "segment" in out and "device" in out and "Φ =" in out


def test_misuse_exits_2_with_one_line(tmp_path: Path) -> None:
    for args, words in (
        ([], "exactly one of --problem"),
        (["--problem", str(tmp_path / "p.json"), "--cluster", str(EXAMPLE)], "exactly one of --problem"),
        (["--cluster", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["--cluster", str(EXAMPLE), "--privacy", "maybe"], "--privacy"),
    ):
        result = runner.invoke(app, ["plan", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.startswith("edgesplit: error:")]
        assert len(lines) == 1 and words in lines[0], (args, result.stderr)
    code, out = _plan("--cluster", str(EXAMPLE), "--privacy", "maybe", "--json")
    assert code == 2 and json.loads(out)["error"] == "invalid_input"
