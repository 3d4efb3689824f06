"""What every command group shares: the app, the global options, output helpers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mlops_platform import __version__
from mlops_platform.errors import ConfigError
from mlops_platform.settings import (
    PlatformSettings,
    find_env_file,
    load_settings,
    remember_env_file,
    remembered_env_file_path,
)

console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(
    False, "--json", help='Print one JSON object on stdout: {"ok": ..., the fields}.'
)
# The keys every JSON object owns; a command's own fields never use them.
RESERVED = ("ok", "error")


class Context:
    def __init__(self, env_file: Path, how: str = "option") -> None:
        self.env_file = env_file
        self.how = how  # option | variable | cwd | remembered | none (find_env_file)

    def settings(self, *, check: bool = True, platform: bool | None = None) -> PlatformSettings:
        """The settings; ``platform``: the command acts on a running platform (default:
        when ``check``), so a missing env file is named rather than defaults used."""
        platform = check if platform is None else platform
        if platform and self.how == "none" and not self.env_file.is_file():
            # No env file anywhere: complete settings from the environment alone (a
            # container) are fine; otherwise say which file is missing, not "run init",
            # which would write a second .env with new secrets in the wrong folder.
            settings = load_settings(self.env_file, check=False)
            if settings.problems():
                raise no_env_file_error(self.env_file)
            return settings
        return load_settings(self.env_file, check=check)

    def remember(self) -> Path | None:
        """Remember this env file for commands run from other folders."""
        if self.env_file.is_file():
            return remember_env_file(self.env_file)
        return None


def no_env_file_error(env_file: Path) -> ConfigError:
    return ConfigError(
        f"no env file: {env_file.absolute()} does not exist, MLOPS_ENV_FILE is not set and "
        f"none is remembered in {remembered_env_file_path()}",
        fix="run the command in the folder of your .env, or pass --env-file PATH, or set "
        "MLOPS_ENV_FILE (`mlops-platform init` writes a new one only for a new platform)",
    )


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mlops-platform {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    env_file: Path = typer.Option(
        None,
        "--env-file",
        help="Settings file to read. Default, in this order: $MLOPS_ENV_FILE, ./.env, "
        "the one `init`/`up` remembered in ~/.config/mlops-platform/env-file.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    choice = find_env_file(env_file)
    ctx.obj = Context(choice.path, choice.how)


def new_app() -> typer.Typer:
    """The root command with its options and no sub-commands: ``cli`` adds what it needs."""
    root_app = typer.Typer(
        name="mlops-platform",
        help="Run your own MLflow: PostgreSQL, S3 artifacts, an nginx auth proxy.\n\n"
        "Example: mlops-platform init && mlops-platform up",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    root_app.callback()(root)
    return root_app


def progress(message: str) -> None:
    err_console.print(f"[dim]-[/dim] {message}", highlight=False, soft_wrap=True)


class _Output:
    """Whether this process already printed its one JSON object (main() reads it)."""

    emitted = False


def emit(fields: Mapping[str, object], *, exit_code: int = 0) -> None:
    """Print the command's one JSON object, ``{"ok": exit_code == 0, **fields}``, then
    exit with ``exit_code`` when it is not 0: the only way `--json` output is printed.

    ``ok`` is derived from the exit code, so the two cannot disagree; lists go under a
    named plural key of ``fields`` (a bare list does not type-check). A field named
    ``ok`` is accepted only when it says the same (a result's own ``ok``)."""
    if "error" in fields or fields.get("ok", exit_code == 0) != (exit_code == 0):
        raise ValueError(f"--json fields may not redefine {RESERVED}: {sorted(fields)}")
    typer.echo(json.dumps({"ok": exit_code == 0, **fields}, indent=2, default=str))
    _Output.emitted = True
    if exit_code:
        raise typer.Exit(exit_code)


def emit_error(message: str) -> None:
    """The one JSON object of a refused command, ``{"ok": false, "error": LINE}``, unless
    the command already printed its object."""
    if not _Output.emitted:
        typer.echo(json.dumps({"ok": False, "error": message}, indent=2))
        _Output.emitted = True


def json_requested(argv: Sequence[str]) -> bool:
    """``--json`` among the options (before a ``--``): the caller reads JSON on stdout."""
    args = list(argv)
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A table for people. Cells wrap to the terminal's width (80 columns when piped); a
    word longer than its column (a path, a URL) is folded onto the next line, never cut
    off with an ellipsis."""
    out = Table(title=title, show_header=True, header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out
