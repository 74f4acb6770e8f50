"""`edgesplit plan`: solve a planner problem file (DESIGN §4.1/§4.2) and print the plan.

Run: edgesplit plan --problem examples/problems/device_mec_cloud.json [--solver auto] [--json]
Thin shell: parse flags, load, call the planner, print. Imports only the pure planner (fast).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from edgesplit.errors import InfeasibleError, InvalidProblemError, UserInputError


def register(app: typer.Typer) -> None:
    """Attach `plan` to the root app."""
    app.command("plan")(plan)


def plan(
    problem: Path = typer.Option(..., "--problem", help="Planner problem file (JSON, DESIGN §4.2)."),
    solver: str = typer.Option("auto", "--solver", help="dp | exact | greedy | auto"),
    objective: str = typer.Option("latency", "--objective", help="latency (Φ) | throughput (bottleneck)"),
    time_limit_s: float = typer.Option(10.0, "--time-limit-s", min=0.01, help="Exact-search time limit, s."),
    as_json: bool = typer.Option(False, "--json", help="Print only the plan JSON (or an error object)."),
) -> None:
    """Choose the split points and the node of every block; print the plan and its cost."""
    from edgesplit.orchestrator.planner import SOLVERS, load_problem, solve

    try:
        if solver not in SOLVERS:
            raise InvalidProblemError(
                f"--solver: unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}"
            )
        if objective not in ("latency", "throughput"):
            raise InvalidProblemError(f"--objective: must be latency or throughput (got {objective!r})")
        result = solve(load_problem(problem), solver, objective=objective, time_limit_s=time_limit_s)  # type: ignore[arg-type]
    except (InvalidProblemError, InfeasibleError, UserInputError) as exc:
        if as_json:
            code = exc.code if isinstance(exc, InfeasibleError | InvalidProblemError) else "invalid_problem"
            typer.echo(json.dumps({"error": code, "message": str(exc)}))
        else:
            print(f"edgesplit: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    _print_table(result)


def _print_table(result: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgesplit.orchestrator.planner import Plan

    assert isinstance(result, Plan)
    table = Table(title=f"plan ({result.solver}, {result.objective})")
    table.add_column("segment")
    table.add_column("node")
    for seg in result.segments:
        table.add_row(f"{seg.start}:{seg.end}", seg.node)
    console = Console()
    console.print(table)
    c = result.cost
    proof = "optimal (proven)" if result.optimal else "not proven optimal"
    console.print(
        f"L = {c.latency_ms:.3f} ms   U = {c.imbalance:.3f}   P = {c.privacy}   Φ = {c.phi:.3f}"
        f"   bottleneck = {c.bottleneck_ms:.3f} ms   {proof}   solved in {result.solve_ms:.1f} ms"
    )
    if result.pruned:
        console.print(f"searched {result.pruned['kept']} of {result.pruned['of']} nodes (pruned)")
