"""`serve`: the tracking server's entrypoint (and its migrate step)."""

from __future__ import annotations

import typer

from mlops_platform import serve as serve_ops
from mlops_platform.cli.common import JSON_OPTION, console, emit, progress
from mlops_platform.errors import ConfigError
from mlops_platform.settings import PlatformSettings


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
    migrate_only: bool = typer.Option(
        False,
        "--migrate-only",
        help="The migrate step alone: under the schema-writer lock, create or migrate the "
        "schema and the auth store and build the index pack, then exit (no server).",
    ),
    no_migrate: bool = typer.Option(
        False,
        "--no-migrate",
        help="Never change the schema: wait until it is at head (the migrate step's "
        "work), then start. What Kubernetes tracking pods run.",
    ),
    wait_for_head: bool = typer.Option(
        False,
        "--wait-for-head",
        help="Wait until the schema is at head, then exit (no server, no change): an "
        "init container.",
    ),
    wait_seconds: float = typer.Option(
        None,
        "--wait-seconds",
        min=0,
        help="How long --no-migrate/--wait-for-head wait for head (default MLOPS_DB_WAIT_SECONDS).",
    ),
    no_dump: bool = typer.Option(
        False,
        "--no-dump",
        help="--migrate-only: skip the pg_dump taken before migrating (you have a backup).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Wait for the database, check the schema, then run `mlflow server`.

    Schema changes (MLflow's schema, the auth store, the index pack) take a PostgreSQL
    advisory lock: several servers started together migrate once.

    Example: mlops-platform serve --upgrade
    Example: mlops-platform serve --migrate-only --json
    """
    if sum((migrate_only, no_migrate, wait_for_head)) > 1:
        raise ConfigError(
            "--migrate-only, --no-migrate and --wait-for-head exclude each other",
            fix="pass one of them",
        )
    settings = ctx.obj.settings()
    if migrate_only:
        _migrate_only(settings, wait_seconds=wait_seconds, dump=not no_dump, as_json=as_json)
        return
    if wait_for_head:
        _wait_for_head(settings, wait_seconds=wait_seconds, as_json=as_json)
        return
    argv, env = serve_ops.prepare(
        settings,
        upgrade=upgrade,
        progress=progress,
        migrate=not no_migrate,
        wait_seconds=wait_seconds,
    )
    progress("starting: " + " ".join(argv[1:]))
    serve_ops.run_server(argv, env)


def _migrate_only(
    settings: PlatformSettings, *, wait_seconds: float | None, dump: bool, as_json: bool
) -> None:
    result = serve_ops.migrate_only(
        settings, progress=progress, wait_seconds=wait_seconds, dump=dump
    )
    if as_json:
        emit(result.as_dict())
    else:
        console.print(
            result.skipped or f"migrated {result.before or 'empty'} -> {result.after}",
            highlight=False,
        )


def _wait_for_head(
    settings: PlatformSettings, *, wait_seconds: float | None, as_json: bool
) -> None:
    status = serve_ops.wait_for_head(settings, progress=progress, wait_seconds=wait_seconds)
    if as_json:
        emit(status.as_dict())
    else:
        console.print(f"schema at head {status.head}", highlight=False)
