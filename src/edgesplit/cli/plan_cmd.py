"""`edgesplit plan`: solve a planner problem file (DESIGN §4.1/§4.2) and print the plan.

Run: edgesplit plan --problem examples/problems/device_mec_cloud.json [--solver auto] [--json]
     edgesplit plan --cluster examples/mec-3node.yaml [--privacy none] [--json]   (placement preview)
Thin shell: parse flags, load, call the planner, print. ``--problem`` imports only the pure planner
(fast); ``--cluster`` also reads the model's block costs. The preview uses what an operator declares
(nodes, trust, memory, links, privacy blocks, weights), never the ``emulation`` section: before anything
runs, no node has been measured, so every node counts at the reference speed.
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
    problem: Path | None = typer.Option(None, "--problem", help="Planner problem file (JSON, DESIGN §4.2)."),
    cluster: Path | None = typer.Option(
        None, "--cluster", help="CLUSTER.yaml: preview the placement before deploying (instead of --problem)."
    ),
    privacy: str | None = typer.Option(
        None, "--privacy", help="With --cluster: high | none (default: the cluster's request_privacy)."
    ),
    solver: str = typer.Option("auto", "--solver", help="dp | exact | greedy | auto"),
    objective: str = typer.Option("latency", "--objective", help="latency (Φ) | throughput (bottleneck)"),
    time_limit_s: float = typer.Option(10.0, "--time-limit-s", min=0.01, help="Exact-search time limit, s."),
    as_json: bool = typer.Option(False, "--json", help="Print only the plan JSON (or an error object)."),
) -> None:
    """Choose the split points and the node of every block; print the plan and its cost."""
    from edgesplit.orchestrator.planner import SOLVERS, load_problem, solve

    try:
        if (problem is None) == (cluster is None):
            raise UserInputError("give exactly one of --problem FILE or --cluster CLUSTER.yaml")
        if privacy is not None and cluster is None:
            raise UserInputError("--privacy: only with --cluster (a problem file carries its own)")
        if privacy not in (None, "high", "none"):
            raise UserInputError(f"--privacy: must be high or none (got {privacy!r})")
        if solver not in SOLVERS:
            raise InvalidProblemError(
                f"--solver: unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}"
            )
        if objective not in ("latency", "throughput"):
            raise InvalidProblemError(f"--objective: must be latency or throughput (got {objective!r})")
        parsed = load_problem(problem) if problem is not None else _cluster_problem(cluster, privacy)  # type: ignore[arg-type]
        result = solve(parsed, solver, objective=objective, time_limit_s=time_limit_s)  # type: ignore[arg-type]
    except (InvalidProblemError, InfeasibleError, UserInputError) as exc:
        if as_json:
            code = exc.code
            typer.echo(json.dumps({"error": code, "message": str(exc)}))
        else:
            print(f"edgesplit: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    _print_table(result)


def _cluster_problem(cluster_file: Path, privacy: str | None) -> object:
    """The §4.2 problem the orchestrator would start from: declared facts and reference block costs."""
    from edgesplit.cli.services_cmd import _load, _resolve_model
    from edgesplit.cluster.roles import num_blocks_of
    from edgesplit.orchestrator.cluster_facts import block_costs, declared_facts
    from edgesplit.orchestrator.planner import parse_problem
    from edgesplit.orchestrator.problem_builder import build_problem
    from edgesplit.orchestrator.profiler import EnvironmentState

    config = _load(cluster_file).model_copy(update={"emulation": None})  # declared facts only (DESIGN §3)
    model_path = _resolve_model(config.model, cluster_file.parent)
    blocks = block_costs(model_path, config.privacy.block_indices(num_blocks_of(model_path)))
    nothing_measured = EnvironmentState(0.0, {}, {}, None, 0.0, 0, 0.0)
    mode = privacy or config.request_privacy
    return parse_problem(build_problem(nothing_measured, blocks, declared_facts(config), privacy=mode))


def _print_table(result: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgesplit.orchestrator.planner import Plan

    assert isinstance(result, Plan)
    table = Table(title=f"plan ({result.solver}, {result.objective})")
    table.add_column("segment")
    table.add_column("blocks", justify="right")
    table.add_column("node")
    for seg in result.segments:
        table.add_row(f"{seg.start}:{seg.end}", str(seg.end - seg.start), seg.node)
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
