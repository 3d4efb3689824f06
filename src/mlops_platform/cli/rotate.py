"""`rotate`: new secrets and passwords, in .env and in the running local stack."""

from __future__ import annotations

import typer

from mlops_platform import rotate as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, print_json, progress, table


def register(app: typer.Typer) -> None:
    app.command("rotate")(rotate)


def rotate(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, help=f"What to rotate: {', '.join(ops.SECRETS)}, or all.", show_default=False
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Give secrets new values everywhere they are used, then restart what reads them.

    db-password: ALTER ROLE in the running PostgreSQL; s3-keys: SeaweedFS's identity;
    proxy-password: the password file nginx reads; proxy-secret and flask-secret-key: the
    tracking server and nginx, restarted. Values are never printed. Safe to run again: a
    run that failed half-way is repaired by the next one. docker compose: docs/compose.md.

    Example: mlops-platform rotate db-password proxy-secret --json
    """
    obj: Context = ctx.obj
    chosen = ops.check_names(names or [])
    settings = obj.settings(check=False)
    result = ops.rotate_local(settings, obj.env_file, chosen, progress=progress)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(
        table(
            f"rotated in {result.env_file}",
            ["variable", "applied to"],
            [[v, ", ".join(result.applied) or "-"] for v in result.rotated],
        )
    )
    if result.restarted:
        console.print(f"restarted: {', '.join(result.restarted)}")
