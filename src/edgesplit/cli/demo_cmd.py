"""`edgesplit demo`: the showcase — a short mec-smart-city run, static vs adaptive, narrated live.

Run: edgesplit demo            (no arguments: builds or reuses the built-in model; 45 s of load per
                                mode, 3–4 minutes on 2 busy cores, half of it starting the clusters)
     edgesplit demo --short    (a 20-second load per mode, e.g. for a smoke test)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edgesplit.evaluation.scenario import Scenario

DEMO_SCENARIO = Path(__file__).parents[1] / "evaluation" / "scenarios" / "demo-mec-smart-city.yaml"
DEMO_MODES = ["static", "adaptive"]
SHORT_S = 20.0


def register(app: typer.Typer) -> None:
    """Attach `demo` to the root app."""
    app.command("demo")(demo)


def demo(
    out: Path = typer.Option(
        Path("edgesplit-demo"), "--out", help="Folder for results.json, report.md, plots."
    ),
    short: bool = typer.Option(False, "--short", help="A 20 s load per mode instead of 45 s."),
) -> None:
    """Start an emulated MEC cluster on loopback, serve load, disturb it, and compare static with adaptive."""
    from edgesplit.cli.bench_cmd import run
    from edgesplit.errors import UserInputError

    try:
        scenario = demo_scenario(short)
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--out {out}: exists and is not a folder")
    except UserInputError as exc:
        print(f"edgesplit: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    typer.echo(
        "edgesplit demo: a device, two MEC servers and a cloud node on loopback; the tiny built-in model "
        "carries 7B timing (≈25 ms/token on a MEC server, ≈250 ms on the device).\n"
        "The same open-loop requests run twice: once on the best static split for t = 0, once with the "
        "adaptive orchestrator. Watch the events and the orchestrator's decisions below."
    )
    run(scenario, DEMO_MODES, out)
    typer.echo(f"plots: {out / 'latency_cdf.png'} and {out / 'timeline.png'}; table: {out / 'report.md'}")


def demo_scenario(short: bool = False) -> Scenario:
    """The packaged demo scenario; ``short`` squeezes its load and events into ``SHORT_S`` seconds."""
    from edgesplit.evaluation.scenario import load_scenario

    scenario = load_scenario(DEMO_SCENARIO)
    if not short:
        return scenario
    scale = SHORT_S / scenario.workload.duration_s
    events = [e.model_copy(update={"at_s": round(e.at_s * scale, 1)}) for e in scenario.events]
    workload = scenario.workload.model_copy(update={"duration_s": SHORT_S})
    return scenario.model_copy(update={"workload": workload, "events": events})
