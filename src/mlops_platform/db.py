"""The tracking database: connect with a bounded wait, read and compare the schema revision."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy
from sqlalchemy.engine import Engine

from mlops_platform.errors import DatabaseUnavailableError, SchemaError
from mlops_platform.settings import PlatformSettings

SchemaState = Literal["empty", "current", "outdated", "newer"]


def make_engine(settings: PlatformSettings) -> Engine:
    """An engine for the tracking DB. The password stays in this process."""
    return sqlalchemy.create_engine(
        settings.database_url(with_password=True),
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def wait_for_database(
    settings: PlatformSettings,
    *,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    interval: float = 1.0,
) -> float:
    """Connect until the database answers; return the seconds waited.

    Raises ``DatabaseUnavailableError`` after ``timeout`` (default: ``db_wait_seconds``).
    """
    timeout = settings.db_wait_seconds if timeout is None else timeout
    p = settings.db_parts()
    where = f"{p['host']}:{p['port']}/{p['name']}"
    engine = make_engine(settings)
    start = time.monotonic()
    last_error = ""
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
                return time.monotonic() - start
            except sqlalchemy.exc.OperationalError as exc:
                last_error = _first_line(exc)
            waited = time.monotonic() - start
            if waited >= timeout:
                break
            if progress:
                progress(f"waiting for the database at {where} ({waited:.0f}/{timeout:.0f}s)")
            time.sleep(min(interval, max(0.0, timeout - waited)))
    finally:
        engine.dispose()
    hint = _connection_hint(last_error)
    raise DatabaseUnavailableError(
        f"database at {where} did not answer within {timeout:.0f}s ({last_error})",
        fix=hint,
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _connection_hint(error: str) -> str:
    low = error.lower()
    if "password authentication failed" in low:
        return "check MLOPS_DB_PASSWORD (or the password in MLOPS_DB_URL)"
    if "does not exist" in low:
        return "create the database and role, or fix MLOPS_DB_NAME / MLOPS_DB_USER"
    return (
        "start PostgreSQL (`mlops-platform up` for the local stack) or fix "
        "MLOPS_DB_HOST/MLOPS_DB_PORT, or raise MLOPS_DB_WAIT_SECONDS"
    )


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    current: str | None
    head: str

    def as_dict(self) -> dict[str, str | None]:
        return {"state": self.state, "current": self.current, "head": self.head}


def head_revision() -> str:
    """The Alembic head of the installed MLflow's tracking schema."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown id
        return False


def schema_status(settings: PlatformSettings) -> SchemaStatus:
    head = head_revision()
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
            current = None
            if "alembic_version" in tables:
                current = conn.execute(
                    sqlalchemy.text("SELECT version_num FROM alembic_version")
                ).scalar()
    finally:
        engine.dispose()
    if not (tables - {"alembic_version"}):
        return SchemaStatus("empty", current, head)
    if current == head:
        return SchemaStatus("current", current, head)
    if current is not None and _known_revision(current):
        return SchemaStatus("outdated", current, head)
    return SchemaStatus("newer", current, head)


def create_schema(settings: PlatformSettings) -> None:
    """Create MLflow's tables on an empty database, once, before any worker starts.

    Several uvicorn workers each creating the schema at first start race each other;
    doing it here first leaves them nothing to do.
    """
    from mlflow.store.db.utils import _safe_initialize_tables

    engine = make_engine(settings)
    try:
        _safe_initialize_tables(engine)
    finally:
        engine.dispose()


def upgrade_argv(settings: PlatformSettings) -> list[str]:
    """``mlflow db upgrade`` for this database; the password travels in ``PGPASSWORD``."""
    return [sys.executable, "-m", "mlflow", "db", "upgrade", settings.database_url()]


def upgrade_schema(settings: PlatformSettings, env: dict[str, str]) -> None:
    """Run MLflow's migration and check that the database reached the head revision."""
    result = subprocess.run(
        upgrade_argv(settings), env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SchemaError(
            f"`mlflow db upgrade` failed: {tail[0]}",
            fix="restore the database from the backup taken before the upgrade",
        )
    status = schema_status(settings)
    if status.state != "current":
        raise SchemaError(
            f"after the upgrade the schema is {status.current}, expected {status.head}",
            fix="inspect the alembic_version table and MLflow's migration log",
        )


def ensure_schema(
    settings: PlatformSettings,
    *,
    upgrade: bool,
    env: dict[str, str],
    progress: Callable[[str], None] | None = None,
) -> SchemaStatus:
    """Bring the schema to where the server can start, or refuse with the command to run."""
    say = progress or (lambda _msg: None)
    status = schema_status(settings)
    if status.state == "empty":
        say("empty database: creating MLflow's schema")
        create_schema(settings)
        return schema_status(settings)
    if status.state == "current":
        say(f"schema is current ({status.head})")
        return status
    if status.state == "newer":
        import mlflow

        raise SchemaError(
            f"the database schema ({status.current}) is newer than this MLflow "
            f"{mlflow.__version__} knows (head {status.head})",
            fix="install the MLflow version that wrote it; never downgrade a database",
        )
    if not upgrade:
        raise SchemaError(
            f"the database schema is out of date (found {status.current}, "
            f"this MLflow needs {status.head})",
            fix="take a backup, then run `mlops-platform serve --upgrade` "
            "(or set MLOPS_DB_UPGRADE=true)",
        )
    say(f"upgrading the schema from {status.current} to {status.head}")
    upgrade_schema(settings, env)
    return schema_status(settings)
