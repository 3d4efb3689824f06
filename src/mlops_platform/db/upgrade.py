"""``db upgrade``: the guarded upgrade. Pre-flight, a checked dump, MLflow's migration,
checks after it; then the auth store's own dump and migration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_platform.db.auth import AuthStoreStatus, upgrade_auth_store
from mlops_platform.db.connection import auth_settings, where
from mlops_platform.db.pgtools import DumpResult, client_env, dump_database, restore_command
from mlops_platform.db.report import (
    VERIFY_QUERIES,
    DatabaseReport,
    database_report,
    running_server_version,
    verify_queries,
)
from mlops_platform.db.schema import (
    Migration,
    SchemaStatus,
    create_schema,
    schema_status,
    upgrade_schema,
)
from mlops_platform.errors import SchemaError
from mlops_platform.settings import PlatformSettings


@dataclass
class UpgradeResult:
    before: str | None
    after: str | None
    head: str
    applied: list[Migration]
    dump: DumpResult | None
    restore: str | None
    skipped: str | None = None
    checks: list[str] = field(default_factory=list)
    auth_before: AuthStoreStatus | None = None
    auth_after: AuthStoreStatus | None = None
    auth_dump: DumpResult | None = None
    auth_restore: str | None = None

    @property
    def auth_upgraded(self) -> bool:
        return self.auth_before is not None and not self.auth_before.current

    def as_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "head": self.head,
            "applied": [m.as_dict() for m in self.applied],
            "dump": self.dump.as_dict() if self.dump else None,
            "restore": self.restore,
            "skipped": self.skipped,
            "checks": self.checks,
            "auth_store": None
            if self.auth_before is None
            else {
                "before": self.auth_before.as_dict(),
                "after": self.auth_after.as_dict() if self.auth_after else None,
                "upgraded": self.auth_upgraded,
                "dump": self.auth_dump.as_dict() if self.auth_dump else None,
                "restore": self.auth_restore,
            },
        }


def guarded_upgrade(
    settings: PlatformSettings,
    *,
    dump: bool = True,
    dump_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    check_running: bool = True,
) -> UpgradeResult:
    """Dump, migrate with MLflow, verify; refuse what MLflow could not run afterwards.

    ``check_running=False`` skips the look for a running server of another MLflow on
    this host: the migrate step of a cluster runs where no server listens.

    Pre-flight (nothing changes): the database answers, the schema is not newer than this
    MLflow, and no running tracking server of another MLflow version would be left on a
    schema it does not know. Then the dump, checked; then ``mlflow db upgrade``; then the
    revision and a few reads. Every failure after the dump says how to restore it.
    """
    say = progress or (lambda _msg: None)
    report = database_report(settings, top=1)
    status = report.schema
    _refuse_newer(report)
    if status.state == "current":
        result = UpgradeResult(
            status.current,
            status.current,
            status.head,
            [],
            None,
            None,
            skipped=f"schema already at head {status.head}; nothing to do",
        )
        return _upgrade_auth(settings, report, result, dump, dump_dir, say)
    if check_running:
        _refuse_other_running_server(settings)
    taken: DumpResult | None = None
    if dump:
        folder = _dump_folder(settings, dump_dir)
        say(f"dumping {report.where} to {folder}")
        taken = dump_database(settings, folder, server_version=report.server_version)
        say(f"dump {taken.path} ({taken.bytes} bytes, {taken.entries} entries) checked")
    else:
        say("no dump taken (--no-dump)")
    restore = restore_command(settings, taken.path) if taken else None
    recover = (
        f"restore the dump: {restore}"
        if restore
        else "no dump was taken: restore from your own backup"
    )
    after_status = _migrate(settings, status, report.pending, recover, say)
    result = UpgradeResult(
        status.current,
        after_status.current,
        after_status.head,
        report.pending,
        taken,
        restore,
        checks=[f"ok: {sql}" for sql in VERIFY_QUERIES],
    )
    return _upgrade_auth(settings, report, result, dump, dump_dir, say)


def _dump_folder(settings: PlatformSettings, dump_dir: Path | None) -> Path:
    return dump_dir or settings.db_dump_dir or settings.state_dir / "dumps"


def _refuse_newer(report: DatabaseReport) -> None:
    """Refuse a tracking schema or an auth store newer than this MLflow knows."""
    from mlops_platform.migrations import mlflow_version

    status = report.schema
    if status.state == "newer":
        raise SchemaError(
            f"the database schema ({status.current}) is newer than this MLflow "
            f"{mlflow_version()} knows (head {status.head})",
            fix="install the MLflow version that wrote it; never downgrade a database",
        )
    if report.auth is not None and report.auth.state == "newer":
        raise SchemaError(
            f"the auth store {report.auth.database} is at {report.auth.current_revision}, "
            f"newer than this MLflow {mlflow_version()} knows (head {report.auth.head})",
            fix="install the MLflow version that wrote it; never downgrade a database",
        )


def _refuse_other_running_server(settings: PlatformSettings) -> None:
    """Refuse while a tracking server of another MLflow runs on this host: after the
    upgrade it would face a schema it does not know."""
    from mlops_platform.migrations import mlflow_version

    running = running_server_version(settings)
    if running is not None and running != mlflow_version():
        raise SchemaError(
            f"a tracking server of MLflow {running} is running on this database; after the "
            f"upgrade to {mlflow_version()}'s schema it could no longer run",
            fix="stop it first (`mlops-platform down`, or scale the deployment to 0), "
            "then run `mlops-platform db upgrade` with the new MLflow",
        )


def _migrate(
    settings: PlatformSettings,
    status: SchemaStatus,
    pending: list[Migration],
    recover: str,
    say: Callable[[str], None],
) -> SchemaStatus:
    """Create or migrate the schema, then check the revision and a few basic reads; every
    failure names ``recover``. The status after."""
    if status.state == "empty":
        say("empty database: creating MLflow's schema")
        create_schema(settings)
    else:
        say(f"migrating {status.current} -> {status.head} ({len(pending)} migrations)")
        try:
            upgrade_schema(settings, client_env(settings))
        except SchemaError as exc:
            after = schema_status(settings).current
            raise SchemaError(
                f"{exc.message}; the schema is now at {after} (was {status.current})",
                fix=recover,
            ) from None
    after_status = schema_status(settings)
    if after_status.state != "current":
        raise SchemaError(
            f"after the upgrade the schema is at {after_status.current}, "
            f"expected {after_status.head}",
            fix=recover,
        )
    failures = verify_queries(settings)
    if failures:
        raise SchemaError("after the upgrade a basic query failed: " + failures[0], fix=recover)
    return after_status


def _upgrade_auth(
    settings: PlatformSettings,
    report: DatabaseReport,
    result: UpgradeResult,
    dump: bool,
    dump_dir: Path | None,
    say: Callable[[str], None],
) -> UpgradeResult:
    """The auth store's part of ``db upgrade``: dump it, migrate it under serve's lock."""
    before = report.auth
    if before is None:  # permissions off: the kit does not run MLflow's auth app
        return result
    result.auth_before = before
    if before.current:
        result.auth_after = before
        if result.skipped:
            result.skipped = (
                f"schema already at head {result.head} and the auth store at "
                f"{before.head}; nothing to do"
            )
        return result
    result.skipped = None
    if dump and before.state in ("outdated", "empty"):
        folder = _dump_folder(settings, dump_dir)
        auth = auth_settings(settings)
        say(f"dumping the auth store {where(auth)} to {folder}")
        result.auth_dump = dump_database(auth, folder, server_version=report.server_version)
        result.auth_restore = restore_command(auth, result.auth_dump.path)
    say(
        f"migrating the auth store {before.database}: "
        f"{before.current_revision or before.state} -> {before.head} (under serve's lock)"
    )
    try:
        result.auth_after = upgrade_auth_store(settings)
    except SchemaError as exc:
        recover = (
            f"restore its dump: {result.auth_restore}"
            if result.auth_restore
            else "restore it from your backup (`mlops-platform backup restore`)"
        )
        raise SchemaError(exc.message, fix=recover) from None
    return result
