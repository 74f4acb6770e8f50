"""`edgesplit bench`: run a scenario (DESIGN §4.4) on the local cluster for each mode and write the report.

Run: edgesplit bench scenarios/mec-smart-city.yaml --out out/ [--modes static,adaptive]
Thin shell: validate everything first (exit 2 on a bad scenario or flag), run the modes with Rich
progress bars and live narration, then write results.json, report.md, the two plots and requests.jsonl.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from edgesplit.errors import UserInputError

ALL_MODES = "single,cloud,static,adaptive,oracle"


def register(app: typer.Typer) -> None:
    """Attach `bench` to the root app."""
    app.command("bench")(bench)


def bench(
    scenario: Path = typer.Argument(
        ..., help="Scenario file (YAML: a cluster file + workload, sla, events)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for results.json, report.md and the plots."),
    modes: str = typer.Option(ALL_MODES, "--modes", help="Comma-separated modes to run, in this order."),
) -> None:
    """Run SCENARIO once per mode on a fresh local cluster, the same requests each time; write the report."""
    from edgesplit.evaluation.modes import cloud_node, parse_modes
    from edgesplit.evaluation.scenario import load_scenario

    try:
        loaded = load_scenario(scenario)
        mode_list = parse_modes(modes)
        if "cloud" in mode_list:
            cloud_node(loaded.cluster())
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--out {out}: exists and is not a folder")
    except UserInputError as exc:
        print(f"edgesplit: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    run(loaded, mode_list, out)


@dataclass
class PhaseTimes:
    """Wall seconds per mode and phase, from the runner's progress calls: where a run's time goes."""

    clock: Callable[[], float] = time.monotonic
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    _open: dict[str, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def enter(self, mode: str, phase: str) -> None:
        """``mode`` is in ``phase`` from now on (a repeated phase is not a new one; "done" ends it)."""
        now = self.clock()
        current = self._open.get(mode)
        if current is not None and current[0] == phase:
            return
        if current is not None:
            spent = self.seconds.setdefault(mode, {})
            spent[current[0]] = spent.get(current[0], 0.0) + now - current[1]
        if phase == "done":
            self._open.pop(mode, None)
        else:
            self._open[mode] = (phase, now)

    def summary(self, extra: dict[str, float]) -> str:
        """One line: each mode's phases, then ``extra`` (e.g. writing the report), then the total."""
        parts = [
            f"{mode}: " + ", ".join(f"{phase} {s:.1f} s" for phase, s in phases.items())
            for mode, phases in self.seconds.items()
        ]
        parts += [f"{name} {s:.1f} s" for name, s in extra.items()]
        return f"time: {' | '.join(parts)} | total {self.clock() - self.started:.1f} s"


def run(scenario: Any, modes: list[str], out: Path) -> None:
    """Run the modes with progress bars, write the outputs, print the table and where the files are."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgesplit.evaluation import runner
    from edgesplit.evaluation.report import write_outputs

    console = Console()
    workload = scenario.workload
    console.print(
        f"[bold]{scenario.name}[/]: {workload.rate_rps:g} req/s for {workload.duration_s:g} s, "
        f"{len(scenario.events)} event(s), SLA {scenario.sla.budget_ms:g} ms; modes: {', '.join(modes)}"
    )
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    phases = PhaseTimes()
    with Progress(*columns, console=console) as progress:
        tasks = {m: progress.add_task(f"{m}: waiting", total=None) for m in modes}

        def on_progress(mode: str, phase: str, done: int, total: int) -> None:
            phases.enter(mode, phase)
            progress.update(tasks[mode], description=f"{mode}: {phase}", completed=done, total=total or None)

        def narrate(mode: str, t_s: float, line: str) -> None:
            progress.console.print(f"  [dim]{mode:>8} t={t_s:6.1f} s[/]  {line}")

        results, timelines = runner.run_scenario(scenario, modes, out, progress=on_progress, narrate=narrate)
    writing = time.monotonic()
    paths = write_outputs(out, scenario.name, results, timelines, scenario)
    writing_s = time.monotonic() - writing
    print_table(console, results)
    print_claims(console, results)
    for path in paths.values():
        console.print(f"wrote {path}")
    console.print(phases.summary({"report": writing_s}), highlight=False, soft_wrap=True)


def print_table(console: Any, results: dict[str, Any]) -> None:
    """report.md's table in the terminal."""
    from rich.table import Table

    from edgesplit.evaluation.report import report_table

    rows = report_table(results)
    table = Table(title="measured here vs the paper's claims (Table 5)")
    for i, name in enumerate(rows[0]):
        table.add_column(name, justify="right" if 0 < i < len(rows[0]) - 2 else "left", no_wrap=i == 0)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)


def print_claims(console: Any, results: dict[str, Any]) -> None:
    """The issue's claims checked on this run, one line each."""
    from edgesplit.evaluation.claims import check_claims

    for check in check_claims(results):
        mark = "[green]holds[/]" if check.holds else "[bold red]does not hold[/]"
        console.print(f"  {check.claim}: {check.measured} (target {check.target}) — {mark}")
