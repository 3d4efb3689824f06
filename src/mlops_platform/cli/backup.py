"""`backup create | list | verify | restore | prune`: the whole platform, consistently."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mlops_platform import backup as ops
from mlops_platform.cli.common import (
    JSON_OPTION,
    Context,
    console,
    emit,
    err_console,
    progress,
    table,
)
from mlops_platform.units import human_size

backup_app = typer.Typer(
    help="Backups: a consistent database dump plus the artifacts, verified and restorable.",
    no_args_is_help=True,
)

YES_OPTION = typer.Option(False, "--yes", "-y", help="Do not ask to confirm.")
BACKUP_ID_ARGUMENT = typer.Argument(..., help="Backup ID from `backup list`, or `latest`.")


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")


class RichReporter:
    """Messages and a byte progress bar on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def message(self, text: str) -> None:
        progress(text)

    def start(self, description: str, total: int) -> None:
        self.finish()
        if total <= 0:
            return
        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


def _reporter(as_json: bool) -> Any:
    return ops.QuietReporter() if as_json else RichReporter()


def _confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; unattended (no terminal on stdin) refuse unless ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ops.BackupError(
            f"not confirmed: {question.rstrip('?')} (no terminal to ask on)",
            fix="pass --yes to run it unattended",
        )
    if not typer.confirm(question, default=False, err=True):
        raise typer.Abort()


@backup_app.command("create")
def create(
    ctx: typer.Context,
    full: bool = typer.Option(
        False, "--full", help="Download every artifact, even those the previous backup holds."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Dump the database in one snapshot and copy the artifacts of that snapshot.

    MLflow's user store (users, roles, grants; MLOPS_AUTH_DB_NAME) is dumped too, in a
    snapshot held together with the tracking database's.

    Example: mlops-platform backup create
    """
    obj: Context = ctx.obj
    result = ops.create_backup(obj.settings(), full=full, report=_reporter(as_json))
    if as_json:
        emit(result.as_dict())
        return
    m = result.manifest
    console.print(
        f"backup [bold]{result.id}[/bold] in {result.path} ({result.seconds:.1f}s): "
        f"database {human_size(m.dump_bytes)}, {len(m.artifacts)} artifacts "
        f"({human_size(m.artifact_bytes)}; {m.copied} copied, {m.linked} linked)"
    )
    if m.auth_database:
        console.print(
            f"auth store {m.auth_database}: {human_size(m.auth_dump_bytes)}, "
            f"{m.auth_row_counts.get('users', 0)} users"
        )
    else:
        console.print("no auth store: users, roles and grants are not in this backup")
    if m.skipped_newer or m.skipped_unreferenced:
        console.print(
            f"left out: {m.skipped_newer} objects written after the snapshot, "
            f"{m.skipped_unreferenced} objects of runs/models the database does not hold"
        )
    for key in m.skipped_unsafe:
        console.print(f"[yellow]WARNING:[/yellow] skipped key that is not a safe path: {key!r}")


@backup_app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List the complete backups, oldest first.

    Example: mlops-platform backup list --json
    """
    obj: Context = ctx.obj
    found = ops.list_backups(obj.settings())
    if as_json:
        emit({"backups": [b.as_dict() for b in found]})
        return
    if not found:
        console.print("no backups yet; take one with `mlops-platform backup create`")
        return
    # Six narrow columns fit in 80: the ID is the start time; the finish time is in --json.
    out = table(
        f"backups in {found[0].path.parent}",
        ["id (start, UTC)", "MLflow", "runs", "artifacts", "copied", "database"],
        [
            [
                b.id,
                b.mlflow_version,
                b.runs,
                f"{b.artifacts} ({human_size(b.artifact_bytes)})",
                b.copied,
                human_size(b.dump_bytes),
            ]
            for b in found
        ],
    )
    out.columns[0].no_wrap = True
    console.print(out)


@backup_app.command("verify")
def verify(
    ctx: typer.Context,
    backup_id: str = BACKUP_ID_ARGUMENT,
    quick: bool = typer.Option(
        False, "--quick", help="Check checksums only; skip restoring into a throwaway PostgreSQL."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check every checksum, then restore the dump into a throwaway PostgreSQL and compare
    row counts; exit 1 on any difference.

    Example: mlops-platform backup verify latest
    """
    obj: Context = ctx.obj
    result = ops.verify_backup(
        obj.settings(), backup_id, restore_check=not quick, report=_reporter(as_json)
    )
    code = 0 if result.ok else 1
    if as_json:
        emit(result.as_dict(), exit_code=code)
    elif result.ok:
        restored = "" if result.restored_counts is None else "; dump restores with equal row counts"
        console.print(
            f"backup {result.id} OK: {result.checked_files} files, "
            f"{human_size(result.checked_bytes)} checked{restored} ({result.seconds:.1f}s)"
        )
    else:
        for problem in result.problems:
            console.print(f"FAIL: {problem}", soft_wrap=True, highlight=False)
        console.print(f"backup {result.id} has {len(result.problems)} problems")
    raise typer.Exit(code)


@backup_app.command("restore")
def restore(
    ctx: typer.Context,
    backup_id: str = BACKUP_ID_ARGUMENT,
    force: bool = typer.Option(
        False, "--force", help="Replace a platform that already holds runs, models or artifacts."
    ),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Restore artifacts and database from a backup; upgrade the schema when it is older.

    The auth store (users, roles, grants) is restored too when the backup holds it.

    Example: mlops-platform backup restore 20260101T020000Z --yes
    """
    obj: Context = ctx.obj
    settings = obj.settings()
    # The question comes after every check that could refuse (restore_backup asks it).
    result = ops.restore_backup(
        settings,
        backup_id,
        force=force,
        report=_reporter(as_json),
        confirm=lambda question: _confirm(question, yes),
    )
    code = 1 if result.problems else 0
    if as_json:
        emit(result.as_dict(), exit_code=code)
    else:
        console.print(
            f"restored backup {result.id} in {result.seconds:.1f}s: {result.uploaded} artifacts "
            f"uploaded ({human_size(result.uploaded_bytes)}), {result.skipped_present} already "
            f"present, {result.removed_extra} extra objects removed"
        )
        if result.upgraded:
            console.print(f"schema upgraded {result.schema_before} -> {result.schema_after}")
        if result.auth_restored:
            upgraded = " and upgraded" if result.auth_upgraded else ""
            console.print(
                f"auth store {settings.auth_db_name} restored{upgraded}: users, roles, grants"
            )
        else:
            console.print("the backup holds no auth store: users, roles and grants unchanged")
        for problem in result.problems:
            console.print(f"FAIL: {problem}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


@backup_app.command("prune")
def prune(
    ctx: typer.Context,
    keep: int = typer.Option(
        None, "--keep", min=1, help="Keep the newest N backups (default MLOPS_BACKUP_KEEP)."
    ),
    older_than: str = typer.Option(
        None, "--older-than", help="Remove backups older than this: 30d, 12h, 1d12h, 90m, 2w."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove old backups; the newest is always kept.

    Example: mlops-platform backup prune --keep 7 --yes
    """
    obj: Context = ctx.obj
    settings = obj.settings()
    plan = ops.prune_backups(settings, keep=keep, older_than=older_than, dry_run=True)
    if not dry_run and (plan.removed or plan.partial_removed):
        _confirm(f"remove {len(plan.removed)} backups: {', '.join(plan.removed) or '-'}?", yes)
        plan = ops.prune_backups(settings, keep=keep, older_than=older_than)
    if as_json:
        emit(plan.as_dict())
        return
    # With nothing to remove the plan is the answer, not a dry run: say what was done.
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {len(plan.removed)} backups ({', '.join(plan.removed) or 'none'}); "
        f"kept {len(plan.kept)}"
    )
    if plan.partial_removed:
        console.print(f"{verb} unfinished: {', '.join(plan.partial_removed)}")
