"""MLflow's tracking schema: its revision against the installed MLflow's Alembic head,
creation on an empty database, the upgrade, and the wait for another process's upgrade."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy

from mlops_platform import migrations
from mlops_platform.db.auth import auth_store_status
from mlops_platform.db.connection import connection, make_engine
from mlops_platform.errors import SchemaError
from mlops_platform.settings import PlatformSettings

SchemaState = Literal["empty", "current", "outdated", "newer"]


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    current: str | None
    head: str

    def as_dict(self) -> dict[str, str | None]:
        return {"state": self.state, "current": self.current, "head": self.head}


@dataclass(frozen=True)
class Migration:
    revision: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"revision": self.revision, "description": self.description}


def head_revision() -> str:
    """The Alembic head of the installed MLflow's tracking schema (read from its files)."""
    return migrations.tracking_chain().head()


def script_directory():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(db_url=""))


def known_revision(revision: str) -> bool:
    return migrations.tracking_chain().known(revision)


def pending_migrations(current: str | None) -> list[Migration]:
    """Migrations between ``current`` and MLflow's head, oldest first; [] for a revision
    this MLflow does not know (a newer one's)."""
    chain = migrations.tracking_chain()
    return [Migration(rev, chain.titles[rev]) for rev in chain.pending(current)]


def schema_status(settings: PlatformSettings) -> SchemaStatus:
    head = head_revision()
    with connection(settings, checked=False) as conn:
        tables = set(sqlalchemy.inspect(conn).get_table_names())
        current = None
        if "alembic_version" in tables:
            current = conn.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")
            ).scalar()
    if not (tables - {"alembic_version"}):
        return SchemaStatus("empty", current, head)
    if current == head:
        return SchemaStatus("current", current, head)
    if current is not None and known_revision(current):
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
        from mlops_platform.migrations import mlflow_version

        raise SchemaError(
            f"the database schema ({status.current}) is newer than this MLflow "
            f"{mlflow_version()} knows (head {status.head})",
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


def wait_for_head(
    settings: PlatformSettings,
    *,
    timeout: float,
    progress: Callable[[str], None] | None = None,
    interval: float = 2.0,
) -> SchemaStatus:
    """Wait until the tracking schema (and the auth store, with permissions on) is at
    this MLflow's head; never change anything. What tracking pods run: the migrate
    step is the one writer.

    Raises ``SchemaError`` at once for a schema newer than this MLflow, and after
    ``timeout`` seconds for one still empty or out of date.
    """
    say = progress or (lambda _msg: None)
    start = time.monotonic()
    last = ""
    while True:
        status = schema_status(settings)
        # (tables without a revision yet: the writer's transaction is under way)
        if status.state == "newer" and status.current is not None:
            from mlops_platform.migrations import mlflow_version

            raise SchemaError(
                f"the database schema ({status.current}) is newer than this MLflow "
                f"{mlflow_version()} knows (head {status.head})",
                fix="run the image of the MLflow version that wrote it; never downgrade",
            )
        auth_ok = True
        if status.state == "current" and settings.identity_enabled:
            auth = auth_store_status(settings)
            auth_ok = auth.current
            if not auth_ok:
                last = f"the auth store {auth.database} is {auth.state}"
        elif status.state != "current":
            last = f"the schema is {status.state} ({status.current or 'no revision'})"
        if status.state == "current" and auth_ok:
            return status
        waited = time.monotonic() - start
        if waited >= timeout:
            raise SchemaError(
                f"{last} after {waited:.0f}s; this server waits for head {status.head} "
                "and never migrates",
                fix="run the migrate step (`mlops-platform serve --migrate-only`, the "
                "Kubernetes Job mlflow-db-migrate-*) and check its log",
            )
        say(f"{last}; waiting for the migrate step ({waited:.0f}/{timeout:.0f}s)")
        time.sleep(interval)
