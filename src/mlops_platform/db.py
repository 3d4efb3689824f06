"""The tracking database: connect with a bounded wait, read and compare the schema revision."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy.engine import Engine

from mlops_platform.errors import (
    DatabaseUnavailableError,
    MissingBinaryError,
    PlatformError,
    SchemaError,
    StateError,
)
from mlops_platform.settings import PlatformSettings, inherited_environment

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


# -- one writer for the schema --------------------------------------------------------

# pg_advisory_lock key of schema changes on the tracking database ("mlopsche" as an int64):
# creating or migrating MLflow's schema, the auth store and the index pack.
SCHEMA_WRITER_LOCK = 0x6D6C6F7073636865


@contextlib.contextmanager
def schema_writer_lock(
    settings: PlatformSettings,
    *,
    progress: Callable[[str], None] | None = None,
    interval: float = 1.0,
) -> Iterator[None]:
    """Hold the tracking database's schema-writer lock while the body runs.

    A PostgreSQL session advisory lock on a connection of its own: whoever holds it is
    the only process creating or migrating the schema (tracking and auth store) and
    building the index pack. Every other ``serve`` (replicas started together, the
    Kubernetes migrate Job, ``serve`` on the local stack with several replicas) waits
    for it, then finds the work done. PostgreSQL releases it if the holder dies.
    """
    say = progress or (lambda _msg: None)
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            waited = 0.0
            while not conn.execute(
                sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEMA_WRITER_LOCK}
            ).scalar():
                if waited == 0.0:
                    say("another process is changing the schema; waiting for it to finish")
                time.sleep(interval)
                waited += interval
            if waited:
                say(f"schema-writer lock taken after {waited:.0f}s")
            try:
                yield
            finally:
                conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_WRITER_LOCK}
                )
    finally:
        engine.dispose()


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
            import mlflow

            raise SchemaError(
                f"the database schema ({status.current}) is newer than this MLflow "
                f"{mlflow.__version__} knows (head {status.head})",
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


# -- status, dump, guarded upgrade --------------------------------------------------


@dataclass(frozen=True)
class Migration:
    revision: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"revision": self.revision, "description": self.description}


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes}


@dataclass(frozen=True)
class DatabaseReport:
    """What `db status` shows: revision vs head, pending migrations, sizes."""

    where: str
    server_version: str
    mlflow_version: str
    schema: SchemaStatus
    pending: list[Migration]
    database_bytes: int
    largest_tables: list[TableSize]
    auth_db: str | None = None
    auth: AuthStoreStatus | None = None

    @property
    def current(self) -> bool:
        """The tracking schema at head, and the auth store too where permissions are on."""
        return self.schema.state == "current" and (self.auth is None or self.auth.current)

    def as_dict(self) -> dict[str, object]:
        return {
            "where": self.where,
            "server_version": self.server_version,
            "mlflow_version": self.mlflow_version,
            **self.schema.as_dict(),
            "pending": [m.as_dict() for m in self.pending],
            "database_bytes": self.database_bytes,
            "largest_tables": [t.as_dict() for t in self.largest_tables],
            "auth_db": self.auth_db,
            "auth_store": self.auth.as_dict() if self.auth else None,
        }


# -- MLflow's user and permission store (auth_store): its own database, same server --------


def auth_settings(settings: PlatformSettings) -> PlatformSettings:
    """The same server and login, pointed at the auth store's database.

    What the dump, restore and report helpers of this module take to work on the auth
    store instead of the tracking database.
    """
    if settings.db_url:
        url = urlsplit(settings.db_url)._replace(path="/" + settings.auth_db_name).geturl()
        return settings.model_copy(update={"db_url": url})
    return settings.model_copy(update={"db_name": settings.auth_db_name})


@dataclass(frozen=True)
class AuthStoreStatus:
    """The auth store's Alembic revision against the installed MLflow's auth head."""

    database: str
    state: Literal["missing", "empty", "current", "outdated", "newer"]
    current_revision: str | None
    head: str

    @property
    def current(self) -> bool:
        return self.state == "current"

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.database,
            "state": self.state,
            "current": self.current_revision,
            "head": self.head,
        }


def _auth_database_exists(settings: PlatformSettings) -> bool:
    engine = connect_checked(settings)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                    {"n": settings.auth_db_name},
                ).scalar()
            )
    finally:
        engine.dispose()


def auth_head_revision() -> str:
    """The Alembic head of the installed MLflow's auth store."""
    from mlops_platform import auth_store

    # importing MLflow's auth package imports its server, which warns about Starlette on
    # stderr: not on every `db status`
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return auth_store.head_revision()


def _known_auth_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server.auth.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config("postgresql://unused"))
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown id
        return False


def auth_store_status(settings: PlatformSettings) -> AuthStoreStatus:
    """Where the auth store stands: missing database, empty, at MLflow's head, or not."""
    from mlops_platform import auth_store

    head = auth_head_revision()
    name = settings.auth_db_name
    if not _auth_database_exists(settings):
        return AuthStoreStatus(name, "missing", None, head)
    current = auth_store.revision(settings)
    if current is None:
        return AuthStoreStatus(name, "empty", None, head)
    if current == head:
        return AuthStoreStatus(name, "current", current, head)
    if _known_auth_revision(current):
        return AuthStoreStatus(name, "outdated", current, head)
    return AuthStoreStatus(name, "newer", current, head)


def upgrade_auth_store(settings: PlatformSettings) -> AuthStoreStatus:
    """Create the auth database if missing and migrate it to MLflow's head.

    Under the same PostgreSQL advisory lock ``serve`` takes (``auth_store.open_store``),
    so an upgrade and a starting server never migrate it at once.
    """
    from mlops_platform import auth_store

    try:
        store = auth_store.open_store(settings)
    except PlatformError:
        raise
    except Exception as exc:
        raise SchemaError(
            f"migrating the auth store {settings.auth_db_name} failed: {_first_line(exc)}",
            fix="its transaction was rolled back; fix the error and run "
            "`mlops-platform db upgrade` again",
        ) from None
    store.engine.dispose()
    status = auth_store_status(settings)
    if not status.current:
        raise SchemaError(
            f"after the upgrade the auth store is at {status.current_revision}, "
            f"expected {status.head}",
            fix="inspect the alembic_version_auth table of " + settings.auth_db_name,
        )
    return status


def where(settings: PlatformSettings) -> str:
    p = settings.db_parts()
    return f"{p['host']}:{p['port']}/{p['name']}"


def _script_directory():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(db_url=""))


def pending_migrations(current: str | None) -> list[Migration]:
    """Migrations between ``current`` and MLflow's head, oldest first."""
    script = _script_directory()
    head = script.get_current_head()
    if current == head:
        return []
    try:
        revisions = list(script.iterate_revisions(head, current or "base"))
    except Exception:  # an unknown (newer) revision
        return []
    out = [
        Migration(r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "")
        for r in revisions
    ]
    return list(reversed(out))


def connect_checked(settings: PlatformSettings) -> Engine:
    """An engine whose first connection worked; a typed error naming the fix otherwise."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        error = _first_line(exc)
        raise DatabaseUnavailableError(
            f"cannot connect to the database at {where(settings)} ({error})",
            fix=_connection_hint(error),
        ) from None
    return engine


def database_report(settings: PlatformSettings, *, top: int = 8) -> DatabaseReport:
    """Revision, head, pending migrations, server version and the largest tables."""
    import mlflow

    engine = connect_checked(settings)
    try:
        with engine.connect() as conn:
            server_version = str(conn.execute(sqlalchemy.text("SHOW server_version")).scalar())
            size = int(
                conn.execute(
                    sqlalchemy.text("SELECT pg_database_size(current_database())")
                ).scalar()
                or 0
            )
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT c.relname, GREATEST(c.reltuples, 0)::bigint, "
                    "pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
                    "ORDER BY pg_total_relation_size(c.oid) DESC LIMIT :top"
                ),
                {"top": top},
            ).all()
    finally:
        engine.dispose()
    status = schema_status(settings)
    pending = pending_migrations(status.current) if status.state == "outdated" else []
    if status.state == "empty":
        pending = pending_migrations(None)
    return DatabaseReport(
        where=where(settings),
        server_version=server_version,
        mlflow_version=mlflow.__version__,
        schema=status,
        pending=pending,
        database_bytes=size,
        largest_tables=[TableSize(r[0], int(r[1]), int(r[2])) for r in rows],
        auth_db=settings.auth_db_name if settings.identity_enabled else None,
        auth=auth_store_status(settings) if settings.identity_enabled else None,
    )


@dataclass(frozen=True)
class DumpResult:
    path: Path
    bytes: int
    seconds: float
    entries: int

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "entries": self.entries,
        }


def _major(version: str) -> int:
    match = re.search(r"(\d+)(?:\.(\d+))?", version)
    return int(match.group(1)) if match else 0


def client_env(settings: PlatformSettings) -> dict[str, str]:
    """Environment of pg_dump/pg_restore/psql: the password in PGPASSWORD, never argv."""
    env = inherited_environment(keep_settings=False)
    password = settings.db_parts()["password"]
    if password:
        env["PGPASSWORD"] = password
    return env


def client_binary(settings: PlatformSettings, name: str, *, server_version: str | None) -> str:
    """A PostgreSQL client program whose major version is at least the server's."""
    from mlops_platform.stack.postgres import find_bin_dir

    path = find_bin_dir(settings.postgres_bin_dir) / name
    if not path.exists():
        raise MissingBinaryError(
            f"{path} does not exist",
            fix="install the PostgreSQL client (apt-get install -y postgresql-client) or "
            "set MLOPS_POSTGRES_BIN_DIR",
        )
    if server_version:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
        found = re.search(r"\)\s*(\d+)", out.stdout)  # "pg_dump (PostgreSQL) 15.18 (...)"
        have = int(found.group(1)) if found else 0
        need = _major(server_version)
        if have < need:
            raise MissingBinaryError(
                f"{name} is PostgreSQL {have} but the server is {server_version}",
                fix=f"install PostgreSQL {need} client programs and set MLOPS_POSTGRES_BIN_DIR",
            )
    return str(path)


def conn_args(settings: PlatformSettings) -> list[str]:
    p = settings.db_parts()
    return ["-h", str(p["host"]), "-p", str(p["port"]), "-U", str(p["user"])]


def dump_database(
    settings: PlatformSettings, folder: Path, *, server_version: str | None = None
) -> DumpResult:
    """``pg_dump -Fc`` into ``folder``; checked with ``pg_restore --list`` before returning."""
    if server_version is None:
        server_version = database_report(settings, top=1).server_version
    pg_dump = client_binary(settings, "pg_dump", server_version=server_version)
    pg_restore = client_binary(settings, "pg_restore", server_version=server_version)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot create the dump folder {folder}: {exc.strerror}",
            fix="set MLOPS_DB_DUMP_DIR to a writable folder",
        ) from None
    name = settings.db_parts()["name"]
    path = folder / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.dump"
    start = time.monotonic()
    env = client_env(settings)
    result = subprocess.run(
        [pg_dump, "-Fc", "--no-password", *conn_args(settings), "-f", str(path), str(name)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SchemaError(f"pg_dump failed: {tail}", fix="fix the error above; nothing was changed")
    listing = subprocess.run(
        [pg_restore, "--list", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise SchemaError(
            f"the dump {path} is unreadable: {listing.stderr.strip()[:200]}",
            fix="check the disk under MLOPS_DB_DUMP_DIR; nothing was changed",
        )
    entries = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    return DumpResult(path, path.stat().st_size, time.monotonic() - start, entries)


def restore_command(settings: PlatformSettings, dump: Path) -> str:
    """The command that puts a database back the way the dump recorded it."""
    p = settings.db_parts()
    return (
        f"PGPASSWORD=... pg_restore --clean --if-exists --no-owner -h {p['host']} "
        f"-p {p['port']} -U {p['user']} -d {p['name']} {dump}"
    )


def restore_dump(settings: PlatformSettings, dump: Path) -> None:
    """Restore ``dump`` over the database (``pg_restore --clean --if-exists``)."""
    pg_restore = client_binary(settings, "pg_restore", server_version=None)
    result = subprocess.run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
            *conn_args(settings),
            "-d",
            str(settings.db_parts()["name"]),
            str(dump),
        ],
        env=client_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SchemaError(
            f"pg_restore failed: {tail}", fix=f"run by hand: {restore_command(settings, dump)}"
        )


def running_server_version(settings: PlatformSettings, *, timeout: float = 3.0) -> str | None:
    """The MLflow version the tracking server answers at GET /version, None when it is down."""
    import urllib.error
    import urllib.request

    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{_host(host)}:{settings.server_port}/version"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return response.read().decode("utf-8", "replace").strip() or None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


VERIFY_QUERIES = (
    "SELECT count(*) FROM experiments",
    "SELECT count(*) FROM runs",
    "SELECT count(*) FROM (SELECT 1 FROM metrics LIMIT 1) m",
    "SELECT count(*) FROM (SELECT 1 FROM latest_metrics LIMIT 1) m",
    "SELECT count(*) FROM (SELECT 1 FROM params LIMIT 1) p",
    "SELECT count(*) FROM (SELECT 1 FROM tags LIMIT 1) t",
    "SELECT count(*) FROM registered_models",
)


def verify_queries(settings: PlatformSettings) -> list[str]:
    """Run a few basic reads MLflow depends on; return the failures (empty when fine)."""
    failures: list[str] = []
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            for sql in VERIFY_QUERIES:
                try:
                    conn.execute(sqlalchemy.text(sql)).scalar()
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    conn.rollback()
                    failures.append(f"{sql}: {_first_line(exc)}")
    finally:
        engine.dispose()
    return failures


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
    import mlflow

    say = progress or (lambda _msg: None)
    report = database_report(settings, top=1)
    status = report.schema
    if status.state == "newer":
        raise SchemaError(
            f"the database schema ({status.current}) is newer than this MLflow "
            f"{mlflow.__version__} knows (head {status.head})",
            fix="install the MLflow version that wrote it; never downgrade a database",
        )
    if report.auth is not None and report.auth.state == "newer":
        raise SchemaError(
            f"the auth store {report.auth.database} is at {report.auth.current_revision}, "
            f"newer than this MLflow {mlflow.__version__} knows (head {report.auth.head})",
            fix="install the MLflow version that wrote it; never downgrade a database",
        )
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
    running = running_server_version(settings) if check_running else None
    if running is not None and running != mlflow.__version__:
        raise SchemaError(
            f"a tracking server of MLflow {running} is running on this database; after the "
            f"upgrade to {mlflow.__version__}'s schema it could no longer run",
            fix="stop it first (`mlops-platform down`, or scale the deployment to 0), "
            "then run `mlops-platform db upgrade` with the new MLflow",
        )
    folder = dump_dir or settings.db_dump_dir or settings.state_dir / "dumps"
    taken: DumpResult | None = None
    if dump:
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
    pending = report.pending
    if status.state == "empty":
        say("empty database: creating MLflow's schema")
        create_schema(settings)
    else:
        say(f"migrating {status.current} -> {status.head} ({len(pending)} migrations)")
        env = client_env(settings)
        try:
            upgrade_schema(settings, env)
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
    result = UpgradeResult(
        status.current,
        after_status.current,
        after_status.head,
        pending,
        taken,
        restore,
        checks=[f"ok: {sql}" for sql in VERIFY_QUERIES],
    )
    return _upgrade_auth(settings, report, result, dump, dump_dir, say)


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
        folder = dump_dir or settings.db_dump_dir or settings.state_dir / "dumps"
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
