"""`edgesplit plan`: plan JSON on stdout and exit 0; bad or infeasible input exits 2 naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from planner_oracle import make_problem
from typer.testing import CliRunner

from edgesplit.cli.main import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "problems" / "device_mec_cloud.json"
runner = CliRunner()


def _run(tmp_path: Path, problem: dict[str, Any] | str, *extra: str) -> Any:
    path = tmp_path / "problem.json"
    path.write_text(problem if isinstance(problem, str) else json.dumps(problem))
    return runner.invoke(app, ["plan", "--problem", str(path), *extra])


@pytest.mark.parametrize("solver", ["dp", "exact", "greedy", "auto"])
def test_plan_json_has_the_contract_keys(solver: str) -> None:
    result = runner.invoke(app, ["plan", "--problem", str(EXAMPLE), "--solver", solver, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert {"assignment", "segments", "cost", "optimal", "solver", "solve_ms"} <= plan.keys()
    assert {"latency_ms", "imbalance", "privacy", "phi"} <= plan["cost"].keys()
    assert plan["solver"] == solver
    assert len(plan["assignment"]) == 8
    covered = [b for s in plan["segments"] for b in range(s["start"], s["end"])]
    assert covered == list(range(8))
    assert all(
        plan["assignment"][b] == s["node"] for s in plan["segments"] for b in range(s["start"], s["end"])
    )


def test_plan_without_json_prints_a_table() -> None:
    result = runner.invoke(app, ["plan", "--problem", str(EXAMPLE)])
    assert result.exit_code == 0
    assert "mec1" in result.stdout and "2:7" in result.stdout


def _bad_cases() -> list[tuple[str, dict[str, Any] | str, str]]:
    base = make_problem()
    cases: list[tuple[str, dict[str, Any] | str, str]] = []
    d = json.loads(json.dumps(base))
    d["links"][0]["b"] = "ghost"
    cases.append(("unknown node in a link", d, r"links[0].b"))
    d = json.loads(json.dumps(base))
    d["nodes"][1]["speed"] = -1
    cases.append(("negative speed", d, "nodes[1].speed"))
    d = json.loads(json.dumps(base))
    d["nodes"][2]["util"] = 1.0
    cases.append(("util >= 1", d, "nodes[2].util"))
    d = json.loads(json.dumps(base))
    d["nodes"][2]["id"] = "mec1"
    cases.append(("duplicate ids", d, "nodes[2].id"))
    d = json.loads(json.dumps(base))
    d["blocks"] = []
    cases.append(("empty block list", d, "blocks"))
    d = json.loads(json.dumps(base))
    d["source"] = "nowhere"
    cases.append(("source not a node", d, "source"))
    d = json.loads(json.dumps(base))
    d["weights"] = {"alpha": 1, "delta": 2}
    cases.append(("unknown key", d, "weights.delta"))
    cases.append(("not JSON", "{nope", "not JSON"))
    return cases


@pytest.mark.parametrize(("what", "problem", "field"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_exits_2_naming_the_field(tmp_path: Path, what: str, problem: Any, field: str) -> None:
    result = _run(tmp_path, problem, "--json")
    assert result.exit_code == 2, (what, result.output)
    body = json.loads(result.stdout)
    assert body["error"] == "invalid_problem"
    assert field in body["message"], body["message"]
    plain = _run(tmp_path, problem)
    assert plain.exit_code == 2
    assert plain.stdout == ""
    assert field in plain.stderr and plain.stderr.startswith("edgesplit: error: ")
    assert len(plain.stderr.strip().splitlines()) == 1


def test_infeasible_problem_exits_2_with_the_infeasible_code(tmp_path: Path) -> None:
    d = make_problem()
    for node in d["nodes"]:
        node["mem_bytes"] = 10
    result = _run(tmp_path, d, "--json")
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"] == "infeasible" and body["message"]
