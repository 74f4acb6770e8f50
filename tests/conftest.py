"""Shared fixtures. Factories that build a test's world in a line live beside the tests that use them."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from hypothesis import settings

# Wall-clock deadlines on a shared 2-core CI machine time the neighbours, not the code under test, so
# no property has one (pytest-timeout still catches a hang); example counts stay per test.
settings.register_profile("edgesplit", deadline=None)
settings.load_profile("edgesplit")

CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run the `edgesplit` console script in-process: ``run_main(*args)`` -> (exit code, stdout, stderr)."""
    from edgesplit.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["edgesplit", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1 if exc.code else 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
