"""`init`, `config show`, `config check`."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops_platform.bootstrap import ensure_users_file, init_env_file
from mlops_platform.cli.common import (
    JSON_OPTION,
    Context,
    console,
    emit,
    no_env_file_error,
    table,
)
from mlops_platform.errors import ConfigError
from mlops_platform.settings import load_settings, state_dir_to_record, unknown_variables

config_app = typer.Typer(help="Show and check the settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")


def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Replace an existing env file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a .env with strong generated secrets and the proxy's first user.

    Example: mlops-platform init
    """
    obj: Context = ctx.obj
    if obj.how in ("remembered", "none"):
        # `init` makes the platform of this folder: ./.env, never the remembered one.
        obj.env_file, obj.how = Path(".env"), "cwd"
    recorded = state_dir_to_record(obj.env_file)
    values = {"state_dir": str(recorded)} if recorded is not None else None
    result = init_env_file(obj.env_file, force=force, values=values)
    obj.remember()  # commands run from other folders find this env file
    users_file = None
    if result.written:
        users_file = ensure_users_file(obj.settings(check=False))
    if as_json:
        emit(
            {
                "env_file": str(result.env_file),
                "written": result.written,
                "values": result.values,
                "users_file": str(users_file) if users_file else None,
                "added": result.added,
            }
        )
        return
    if not result.written:
        if result.added:
            console.print(
                f"{obj.env_file} kept; added the missing secret(s): {', '.join(result.added)}"
            )
            return
        console.print(
            f"{obj.env_file} already exists, left unchanged "
            "(use --force to regenerate every secret)"
        )
        return
    console.print(f"wrote {obj.env_file} (mode 600):")
    for key, value in result.values.items():
        console.print(f"  MLOPS_{key.upper()}={value}", highlight=False)
    console.print(f"wrote the proxy password file {users_file}")
    console.print("next: mlops-platform up   (mlops-platform client-env shows the password)")


@config_app.command("show")
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print every setting with secrets redacted.

    Example: mlops-platform config show --json
    """
    settings = ctx.obj.settings(check=False)
    values = settings.redacted()
    if as_json:
        emit({"settings": values})
        return
    rows = [[f"MLOPS_{k.upper()}", v] for k, v in values.items()]
    console.print(table(None, ["variable", "value"], rows))


@config_app.command("check")
def check(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List every problem with the settings; exit code 2 when there is one.

    Example: mlops-platform config check
    """
    obj: Context = ctx.obj
    try:
        problems = load_settings(obj.env_file, check=False).problems()
    except ConfigError as exc:
        problems = [str(exc)]
    warnings = [
        f"{name} is not a setting" + (f" (did you mean {near}?)" if near else " (a typo?)")
        for name, near in unknown_variables(obj.env_file, with_closest=True)
    ]
    if obj.how == "none" and not obj.env_file.is_file():
        warnings.insert(0, str(no_env_file_error(obj.env_file)))
    code = 2 if problems else 0
    if as_json:
        emit({"problems": problems, "warnings": warnings}, exit_code=code)
    else:
        for warning in warnings:
            console.print(f"WARN: {warning}", highlight=False)
        for problem in problems:
            console.print(f"FAIL: {problem}", highlight=False)
        if not problems:
            console.print("OK: settings are complete and safe")
    raise typer.Exit(code)
