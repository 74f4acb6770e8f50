"""The `edgesplit` console script: one Typer app, one thin sub-module per command.

Run: edgesplit --help
"""

from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click_errors  # Typer's own copy of Click raises these

from edgesplit.cli import (
    bench_cmd,
    certs_cmd,
    demo_cmd,
    generate_cmd,
    model_cmd,
    node_cmd,
    plan_cmd,
    services_cmd,
    sim_cmd,
)
from edgesplit.errors import EdgesplitError

app = typer.Typer(
    name="edgesplit",
    help="Adaptive split inference of LLMs across edge, MEC and cloud nodes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """edgesplit: split an LLM across edge, MEC and cloud nodes, and keep re-deciding the split."""


@app.command()
def version() -> None:
    """Print the edgesplit version."""
    from edgesplit import __version__

    typer.echo(__version__)


for module in (
    model_cmd,
    generate_cmd,
    plan_cmd,
    node_cmd,
    services_cmd,
    bench_cmd,
    sim_cmd,
    demo_cmd,
    certs_cmd,
):
    module.register(app)


def fail(message: str, exit_code: int = 2) -> None:
    """Print a one-line error naming what is wrong and exit; no traceback."""
    print(f"edgesplit: error: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


def _usage_line(exc: click_errors.UsageError) -> str:
    """A usage error as one line: the command, what is wrong, where help is."""
    path = exc.ctx.command_path if exc.ctx is not None else "edgesplit"
    command = path.removeprefix("edgesplit").strip()
    message = " ".join(exc.format_message().split())
    return f"{command + ': ' if command else ''}{message} (see '{path} --help')"


def main() -> None:
    """Console-script entry: usage errors and edgesplit errors print one line on stderr (exit 2 or
    the error's code); ``--help`` and successful commands exit 0."""
    try:
        code = app(standalone_mode=False, prog_name="edgesplit")
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click_errors.UsageError as exc:
        fail(_usage_line(exc), exc.exit_code)
    except click_errors.ClickException as exc:
        fail(" ".join(exc.format_message().split()), exc.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    except EdgesplitError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if isinstance(code, int) and code:
        raise SystemExit(code)  # typer.Exit(code) inside a command


if __name__ == "__main__":
    main()
