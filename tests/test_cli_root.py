"""The console script exists, answers --help, and misuse exits 2 with one line on stderr."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CliRun


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "version" in result.stdout


def test_unknown_command_exits_2() -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "edgesplit: error: No such command 'no-such-command'. (see 'edgesplit --help')"
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["generate", "--bogus"], ["generate:", "--bogus"]),
        (["model", "init", "--preset", "tiny"], ["model init:", "--arch"]),
        (["up"], ["up:", "Missing argument"]),
        (["node", "--threads", "many"], ["node:", "--threads"]),
        (["model", "inspect"], ["model inspect:", "Missing argument"]),
        (["generate", "--model"], ["--model", "requires an argument"]),
    ],
)
def test_usage_errors_are_one_line_on_stderr_with_exit_2(
    args: list[str], names: list[str], run_main: CliRun
) -> None:
    code, out, err = run_main(*args)
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgesplit: error: "), err
    assert all(name in lines[0] for name in names), err
    assert "╭" not in err and "Usage:" not in err and out == ""


def test_help_still_exits_0(run_main: CliRun) -> None:
    code, out, err = run_main("plan", "--help")
    assert code == 0 and "--problem" in out and err == ""
