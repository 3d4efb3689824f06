"""The doctor's settings and database checks: reachable, schema at MLflow's head, the
index pack applied."""

from __future__ import annotations

import time

from mlops_platform import db
from mlops_platform.checks import CheckResult
from mlops_platform.errors import PlatformError
from mlops_platform.settings import PlatformSettings


def check_settings(settings: PlatformSettings) -> list[CheckResult]:
    problems = settings.problems()
    if not problems:
        return [CheckResult("settings", "valid", "ok", "settings are complete and safe")]
    return [
        CheckResult(
            "settings", "valid", "fail", p, "fix the variable; `mlops-platform config check`"
        )
        for p in problems
    ]


def check_database(settings: PlatformSettings) -> list[CheckResult]:
    start = time.monotonic()
    try:
        engine = db.connect_checked(settings)
        engine.dispose()
    except PlatformError as exc:
        low = exc.message.lower()
        name = "credentials" if "password authentication" in low else "reachable"
        return [CheckResult("database", name, "fail", exc.message, exc.fix or "")]
    out = [
        CheckResult(
            "database",
            "reachable",
            "ok",
            f"{db.where(settings)} answers, credentials accepted",
            seconds=time.monotonic() - start,
        )
    ]
    status = db.schema_status(settings)
    out.append(_schema(status))
    if status.state == "current":
        out.append(_index_pack(settings))
    return out


def _schema(status: db.SchemaStatus) -> CheckResult:
    if status.state == "current":
        return CheckResult("database", "schema", "ok", f"at head {status.head}")
    if status.state == "outdated":
        behind = len(db.pending_migrations(status.current))
        return CheckResult(
            "database",
            "schema",
            "fail",
            f"schema at {status.current}, {behind} migration(s) behind head {status.head}",
            "take a backup, then `mlops-platform db upgrade`",
        )
    if status.state == "newer":
        return CheckResult(
            "database",
            "schema",
            "fail",
            f"schema {status.current} is newer than this MLflow (head {status.head})",
            "install the MLflow version that wrote it; never downgrade a database",
        )
    return CheckResult(
        "database",
        "schema",
        "fail",
        "the database has no MLflow tables",
        "start the tracking server (`mlops-platform up`) or `mlops-platform db upgrade`",
    )


def _index_pack(settings: PlatformSettings) -> CheckResult:
    from mlops_platform import indexes

    missing = [s.name for s in indexes.list_indexes(settings) if s.state != "applied"]
    return CheckResult(
        "database",
        "index pack",
        "warn" if missing else "ok",
        f"not applied: {', '.join(missing)}" if missing else "all indexes applied",
        "`mlops-platform db indexes apply` (or MLOPS_DB_APPLY_INDEXES=true)" if missing else "",
    )
