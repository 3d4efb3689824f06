"""`users add | remove | list`: who may pass the nginx auth proxy."""

from __future__ import annotations

import sys

import typer

from mlops_platform import users as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, print_json, table
from mlops_platform.errors import ConfigError

users_app = typer.Typer(
    help="Users of the auth proxy. Changes apply on the next request, no reload.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(name: str, from_stdin: bool, generate: bool) -> str | None:
    if from_stdin and generate:
        raise ConfigError("--password-stdin and --generate exclude each other", fix="give only one")
    if generate:
        return None
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise ConfigError(
            "no password given and no terminal to ask for one",
            fix="pipe it with --password-stdin, or use --generate",
        )
    entered: str = typer.prompt(f"Password for {name}", hide_input=True)
    again: str = typer.prompt("Repeat it", hide_input=True)
    if entered != again:
        raise ConfigError("the two passwords differ", fix="run the command again")
    return entered


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User name: letters, digits, dot, dash, underscore."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    generate: bool = typer.Option(
        False, "--generate", help="Generate a 32-character password and print it once."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a user (asks for the password, or reads it, or generates one).

    Example: mlops-platform users add alice --generate
    """
    obj: Context = ctx.obj
    settings = obj.settings(check=False)
    password = _password(name, password_stdin, generate)
    result = ops.add_user(settings, name, password)
    if as_json:
        print_json(
            {
                "name": result.name,
                "users_file": str(result.users_file),
                "added": True,
                "generated_password": result.generated_password,
            }
        )
        return
    console.print(f"added {result.name} to {result.users_file} (effective immediately)")
    if result.generated_password:
        console.print(
            f"password (shown once): {result.generated_password}", highlight=False, soft_wrap=True
        )


@users_app.command("remove")
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User to remove."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a user; its next request gets 401. A missing user is skipped.

    Example: mlops-platform users remove alice
    """
    obj: Context = ctx.obj
    result = ops.remove_user(obj.settings(check=False), name)
    if as_json:
        print_json(
            {"name": result.name, "users_file": str(result.users_file), "removed": result.removed}
        )
        return
    if result.removed:
        console.print(f"removed {result.name} from {result.users_file} (effective immediately)")
    else:
        console.print(f"no user {result.name} in {result.users_file}, skipped")


@users_app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List the users of the proxy's password file (names only, never hashes).

    Example: mlops-platform users list --json
    """
    obj: Context = ctx.obj
    settings = obj.settings(check=False)
    found = ops.list_users(settings)
    if as_json:
        print_json([{"name": u.name, "scheme": u.scheme} for u in found])
        return
    console.print(
        table(
            f"users of {settings.users_file}",
            ["name", "hash"],
            [[u.name, u.scheme] for u in found],
        )
    )
