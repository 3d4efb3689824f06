"""`db status`, `db upgrade`, `db indexes list|apply|drop`, `db analyze`."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops_platform import db as db_ops
from mlops_platform import indexes as index_ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, progress, table
from mlops_platform.units import human_size

db_app = typer.Typer(help="The tracking database: schema, upgrades, indexes.", no_args_is_help=True)
indexes_app = typer.Typer(help="The kit's measured PostgreSQL index pack.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    db_app.add_typer(indexes_app, name="indexes")
    app.add_typer(db_app, name="db")


@db_app.command("status")
def status(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Schema revisions vs this MLflow's heads (tracking and auth store); exit 1 if not current.

    The tracking database's revision, pending migrations and sizes; with permissions on,
    also MLflow's user store (MLOPS_AUTH_DB_NAME) against MLflow's auth head.

    Example: mlops-platform db status --json
    """
    obj: Context = ctx.obj
    report = db_ops.database_report(obj.settings())
    code = 0 if report.current else 1
    if as_json:
        emit(report.as_dict(), exit_code=code)
    else:
        s = report.schema
        console.print(
            f"database {report.where} (PostgreSQL {report.server_version}), "
            f"MLflow {report.mlflow_version}"
        )
        console.print(f"schema: [bold]{s.state}[/bold]  revision {s.current}  head {s.head}")
        a = report.auth
        if a is None:
            console.print("auth store: permissions are off (MLOPS_AUTH_ENABLED=false)")
        else:
            console.print(
                f"auth store {a.database}: [bold]{a.state}[/bold]  "
                f"revision {a.current_revision}  head {a.head}"
            )
        if report.pending:
            console.print(
                table(
                    f"{len(report.pending)} pending migrations (oldest first)",
                    ["revision", "description"],
                    [[m.revision, m.description] for m in report.pending],
                )
            )
        console.print(f"database size: {human_size(report.database_bytes)}")
        console.print(
            table(
                "largest tables",
                ["table", "rows (est.)", "size"],
                [[t.name, t.rows, human_size(t.bytes)] for t in report.largest_tables],
            )
        )
        if s.state == "outdated" or (a is not None and a.state in ("outdated", "empty", "missing")):
            console.print("next: mlops-platform db upgrade")
    raise typer.Exit(code)


@db_app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    no_dump: bool = typer.Option(
        False, "--no-dump", help="Skip the pg_dump taken before migrating (you have a backup)."
    ),
    dump_dir: Path = typer.Option(
        None, "--dump-dir", help="Folder of the dump (default: MLOPS_DB_DUMP_DIR or state/dumps)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Dump the database, run MLflow's migration, verify, and print how to roll back.

    With permissions on, the auth store too: dumped, then migrated under the same lock
    `serve` takes, so a starting server and this command never migrate it at once.

    Example: mlops-platform db upgrade
    """
    obj: Context = ctx.obj
    result = db_ops.guarded_upgrade(
        obj.settings(), dump=not no_dump, dump_dir=dump_dir, progress=progress
    )
    if as_json:
        emit(result.as_dict())
        return
    if result.skipped:
        console.print(result.skipped, soft_wrap=True, highlight=False)
        return
    if result.applied or result.dump or result.before != result.after:
        console.print(
            f"upgraded {result.before} -> {result.after} ({len(result.applied)} migrations); "
            "verified with basic queries"
        )
    else:
        console.print(f"schema already at head {result.head}")
    if result.dump:
        console.print(f"dump: {result.dump.path} ({human_size(result.dump.bytes)})")
        console.print(f"to roll back (with the previous MLflow installed): {result.restore}")
    if result.auth_upgraded and result.auth_before and result.auth_after:
        console.print(
            f"auth store {result.auth_after.database}: "
            f"{result.auth_before.current_revision or result.auth_before.state} -> "
            f"{result.auth_after.current_revision}"
        )
        if result.auth_dump:
            console.print(
                f"auth store dump: {result.auth_dump.path}; to roll back: {result.auth_restore}"
            )


@db_app.command("analyze")
def analyze(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="VACUUM ANALYZE the whole database."),
    as_json: bool = JSON_OPTION,
) -> None:
    """VACUUM ANALYZE MLflow's search tables so the planner uses the indexes.

    Example: mlops-platform db analyze
    """
    result = index_ops.analyze(ctx.obj.settings(), full=full)
    if as_json:
        emit(result.as_dict())
    else:
        console.print(f"analyzed {', '.join(result.tables) or 'nothing'} in {result.seconds:.1f}s")


@indexes_app.command("list")
def indexes_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Each index of the pack and whether it is applied; exit 1 if one is not.

    Example: mlops-platform db indexes list
    """
    rows = index_ops.list_indexes(ctx.obj.settings())
    code = 0 if all(r.state == "applied" for r in rows) else 1
    if as_json:
        emit(
            {"pack_version": index_ops.PACK_VERSION, "indexes": [r.as_dict() for r in rows]},
            exit_code=code,
        )
    else:
        console.print(
            table(
                f"index pack v{index_ops.PACK_VERSION}",
                ["index", "on", "state", "size"],
                [[r.name, f"{r.table} {r.definition}", r.state, human_size(r.bytes)] for r in rows],
            )
        )
    raise typer.Exit(code)


def _print_actions(actions: list[index_ops.IndexAction], as_json: bool) -> None:
    if as_json:
        emit({"actions": [a.as_dict() for a in actions]})
        return
    for a in actions:
        console.print(f"{a.name}: {a.action}" + (f" in {a.seconds:.1f}s" if a.seconds else ""))


@indexes_app.command("apply")
def indexes_apply(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Build the pack with CREATE INDEX CONCURRENTLY; applied ones are skipped.

    Example: mlops-platform db indexes apply
    """
    _print_actions(index_ops.apply_pack(ctx.obj.settings(), progress=progress), as_json)


@indexes_app.command("drop")
def indexes_drop(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Drop every index of the pack (DROP INDEX CONCURRENTLY); MLflow's own stay.

    Example: mlops-platform db indexes drop --yes
    """
    settings = ctx.obj.settings()
    if not yes:
        typer.confirm(f"drop the index pack from {db_ops.where(settings)}?", abort=True)
    _print_actions(index_ops.drop_pack(settings, progress=progress), as_json)
