"""Command-line entry points: one thin Typer sub-app per command (parse -> config -> run)."""
