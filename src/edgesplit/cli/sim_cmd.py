"""`edgesplit sim`: a scenario (DESIGN §4.4) in the discrete-event simulator, the real planner and
controller deciding; prints the same Table-5 rows as `edgesplit bench`.

Run: edgesplit sim scenarios/mec-smart-city.yaml [--modes static,adaptive,oracle] [--out DIR] [--nodes 100]
Thin shell: validate everything first (exit 2 on a bad scenario or flag), simulate each mode with a
progress bar, print the table; with --out write results.json, report.md, the plots and requests.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from edgesplit.errors import ScenarioError, UserInputError

DEFAULT_MODES = "static,adaptive,oracle"


def register(app: typer.Typer) -> None:
    """Attach `sim` to the root app."""
    app.command("sim")(sim)


def sim(
    scenario: Path = typer.Argument(
        ..., help="Scenario file (YAML: a cluster file + workload, sla, events)."
    ),
    modes: str = typer.Option(DEFAULT_MODES, "--modes", help="Comma-separated modes to simulate, in order."),
    out: Path | None = typer.Option(None, "--out", help="Folder for results.json, report.md and the plots."),
    nodes: int | None = typer.Option(
        None, "--nodes", help="Scale the cluster to N nodes by replicating its MEC nodes (varied)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds measurement noise and scale-up variation."),
) -> None:
    """Simulate SCENARIO once per mode (the real orchestrator on a simulated cluster); print Table 5."""
    from edgesplit.evaluation.modes import cloud_node, parse_modes
    from edgesplit.evaluation.scenario import load_scenario
    from edgesplit.sim.scale import scale_scenario

    try:
        loaded = load_scenario(scenario)
        mode_list = parse_modes(modes)
        if nodes is not None:
            if nodes < 1:
                raise ScenarioError(f"--nodes {nodes}: give a positive number of nodes")
            loaded_scaled = scale_scenario(loaded, nodes, seed)
        else:
            loaded_scaled = loaded
        if "cloud" in mode_list:
            cloud_node(loaded_scaled.cluster())
        if out is not None and out.exists() and not out.is_dir():
            raise UserInputError(f"--out {out}: exists and is not a folder")
    except UserInputError as exc:
        print(f"edgesplit: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    run(loaded, mode_list, out, nodes, seed, scenario.parent)


def run(
    scenario: Any, modes: list[str], out: Path | None, nodes: int | None, seed: int, base_dir: Path
) -> None:
    """Simulate with a progress bar, print the table and speed; write the outputs when asked."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgesplit.cli.bench_cmd import print_claims, print_table
    from edgesplit.sim.run import model_blocks, prepare_world, simulate

    console = Console()
    world = prepare_world(scenario, model_blocks(scenario, base_dir), nodes=nodes, seed=seed)
    sc = world.scenario
    w = sc.workload
    console.print(
        f"[bold]{sc.name}[/] (simulated): {len(sc.nodes)} nodes, {w.rate_rps:g} req/s, {w.duration_s:g} s, "
        f"{len(sc.events)} event(s), SLA {sc.sla.budget_ms:g} ms; modes: {', '.join(modes)}; seed {seed}"
    )
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.fields[sim]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        tasks = {m: progress.add_task(f"{m}: waiting", total=None, sim="") for m in modes}

        def on_progress(mode: str, done: float, total: float) -> None:
            progress.update(
                tasks[mode],
                description=f"{mode}: simulating",
                completed=done,
                total=total,
                sim=f"t={done:.0f} s",
            )

        outcome = simulate(world, modes, on_progress)
    print_table(console, outcome.results)
    print_claims(console, outcome.results)
    for mode, r in outcome.runs.items():
        cycles = r.cycle_cpu_s or [0.0]
        console.print(
            f"  {mode}: {r.sim_s:.0f} simulated s in {r.wall_s:.1f} s wall "
            f"({r.sim_s / max(r.wall_s, 1e-9):.0f}x); {len(r.reconfigurations)} reconfiguration(s); "
            f"controller CPU per cycle: mean {1e3 * sum(cycles) / len(cycles):.1f} ms, "
            f"max {1e3 * max(cycles):.1f} ms"
        )
    if out is not None:
        for path in write_sim_outputs(out, world.scenario, outcome).values():
            console.print(f"wrote {path}")


def write_sim_outputs(out: Path, scenario: Any, outcome: Any) -> dict[str, Path]:
    """bench's files (evaluation/report.py), with report.md headed as a simulation, not a measurement."""
    from edgesplit.evaluation.report import report_markdown, write_outputs

    paths = write_outputs(out, scenario.name, outcome.results, outcome.timelines, scenario)
    body = report_markdown(scenario.name, outcome.results, outcome.timelines, scenario)
    table = body.index("| Metric")
    head = (
        f"# edgesplit sim: {scenario.name}\n\n"
        "Simulated by `edgesplit sim` (discrete-event; the real planner and controller decide on noisy "
        "simulated measurements): figures are simulated time, not wall-clock measurements of a cluster. "
        "The last two columns are the paper's claimed ranges (Table 5), for comparison only.\n\n"
    )
    paths["report"].write_text(head + body[table:])
    return paths
