"""`serve`: the tracking server's entrypoint."""

from __future__ import annotations

import typer

from mlops_platform import serve as serve_ops
from mlops_platform.cli.common import progress


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    upgrade: bool = typer.Option(
        False,
        "--upgrade",
        envvar="MLOPS_DB_UPGRADE",
        help="Migrate an out-of-date schema before starting (take a backup first).",
    ),
) -> None:
    """Wait for the database, check the schema, then exec `mlflow server`.

    Example: mlops-platform serve --upgrade
    """
    settings = ctx.obj.settings()
    argv, env = serve_ops.prepare(settings, upgrade=upgrade, progress=progress)
    progress("starting: " + " ".join(argv[1:]))
    serve_ops.exec_server(argv, env)
