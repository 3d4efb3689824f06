"""What every command group shares: the app, the global options, output helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mlops_platform import __version__
from mlops_platform.settings import PlatformSettings, default_env_file, load_settings

app = typer.Typer(
    name="mlops-platform",
    help="Run your own MLflow: PostgreSQL, S3 artifacts, an nginx auth proxy.\n\n"
    "Example: mlops-platform init && mlops-platform up",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


class Context:
    def __init__(self, env_file: Path) -> None:
        self.env_file = env_file

    def settings(self, *, check: bool = True) -> PlatformSettings:
        return load_settings(self.env_file, check=check)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mlops-platform {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    env_file: Path = typer.Option(
        None,
        "--env-file",
        envvar="MLOPS_ENV_FILE",
        help="Settings file to read (default: ./.env).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = Context(env_file if env_file is not None else default_env_file())


def progress(message: str) -> None:
    err_console.print(f"[dim]-[/dim] {message}", highlight=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    out = Table(title=title, show_header=True, header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out
