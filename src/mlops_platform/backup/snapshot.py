"""The database side: an exported REPEATABLE READ snapshot, what it holds, and its dumps."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from mlops_platform import db
from mlops_platform.backup.common import BackupError
from mlops_platform.settings import PlatformSettings


@dataclass
class Snapshot:
    snapshot_id: str
    snapshot_at: dt.datetime
    row_counts: dict[str, int]
    experiments: set[str]
    runs: set[str]
    logged_models: set[str]
    traces: set[str]
    schema_revision: str | None
    server_version: str


def list_tables(conn: sqlalchemy.Connection) -> list[str]:
    rows = conn.execute(
        sqlalchemy.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
    ).all()
    return [str(r[0]) for r in rows]


def row_counts_of(target: PlatformSettings) -> dict[str, int]:
    """:func:`row_counts` of the database ``target`` names, on a connection of its own."""
    with db.connection(target, checked=False) as conn:
        return row_counts(conn)


def count_mismatches(
    counts: dict[str, int], expected: dict[str, int], what: str = "table"
) -> list[str]:
    """One line per table whose restored row count differs from the manifest's."""
    return [
        f"{what} {t}: {counts.get(t)} rows restored, manifest says {n}"
        for t, n in sorted(expected.items())
        if counts.get(t) != n
    ]


def compare_row_counts(
    target: PlatformSettings, expected: dict[str, int], what: str = "table"
) -> tuple[dict[str, int], list[str]]:
    """The row counts of ``target``'s database, and one line per table that differs from
    ``expected`` (the manifest's): what verify and restore both check after a restore."""
    counts = row_counts_of(target)
    return counts, count_mismatches(counts, expected, what)


def row_counts(conn: sqlalchemy.Connection) -> dict[str, int]:
    """Exact row count of every table of the schema."""
    counts: dict[str, int] = {}
    for name in list_tables(conn):
        quoted = '"' + name.replace('"', '""') + '"'
        found = conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {quoted}")).scalar()
        counts[name] = int(found or 0)
    return counts


def _ids(conn: sqlalchemy.Connection, tables: list[str], table: str, column: str) -> set[str]:
    if table not in tables:
        return set()
    return {str(r[0]) for r in conn.execute(sqlalchemy.text(f"SELECT {column} FROM {table}")).all()}


def _read_snapshot(conn: sqlalchemy.Connection, snapshot_id: str, at: dt.datetime) -> Snapshot:
    tables = list_tables(conn)
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    return Snapshot(
        snapshot_id=snapshot_id,
        snapshot_at=at,
        row_counts=row_counts(conn),
        experiments=_ids(conn, tables, "experiments", "experiment_id"),
        runs=_ids(conn, tables, "runs", "run_uuid"),
        logged_models=_ids(conn, tables, "logged_models", "model_id"),
        traces=_ids(conn, tables, "trace_info", "request_id"),
        schema_revision=str(revision) if revision else None,
        server_version=str(conn.execute(sqlalchemy.text("SHOW server_version")).scalar()),
    )


def dump_argv(settings: PlatformSettings, pg_dump: str, path: Path, snapshot: str) -> list[str]:
    """``pg_dump -Fc`` of the tracking database in an exported snapshot. No secret in it."""
    name = str(settings.db_parts()["name"])
    return [
        pg_dump,
        "-Fc",
        "--no-password",
        f"--snapshot={snapshot}",
        *db.conn_args(settings),
        "-f",
        str(path),
        name,
    ]


@contextlib.contextmanager
def exported_snapshot(
    settings: PlatformSettings,
) -> Iterator[tuple[Snapshot, sqlalchemy.Connection]]:
    """A REPEATABLE READ, read-only transaction whose snapshot pg_dump can share."""
    with db.connection(settings) as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(sqlalchemy.text("SET TRANSACTION READ ONLY"))
            row = conn.execute(
                sqlalchemy.text("SELECT pg_export_snapshot(), transaction_timestamp()")
            ).one()
            yield _read_snapshot(conn, str(row[0]), row[1]), conn


@dataclass
class AuthSnapshot:
    database: str
    snapshot_id: str
    row_counts: dict[str, int]
    revision: str | None


@contextlib.contextmanager
def auth_snapshot(settings: PlatformSettings) -> Iterator[AuthSnapshot | None]:
    """The auth store's own exported snapshot; None when its database does not exist.

    PostgreSQL snapshots do not span databases: this one is opened right after the
    tracking database's and held with it, so the two dumps are milliseconds apart.
    """
    if not db.auth_database_exists(settings):
        yield None
        return
    with exported_snapshot(db.auth_settings(settings)) as (snap, conn):
        revision = None
        if "alembic_version_auth" in snap.row_counts:
            revision = conn.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version_auth")
            ).scalar()
        yield AuthSnapshot(
            settings.auth_db_name,
            snap.snapshot_id,
            snap.row_counts,
            str(revision) if revision else None,
        )


def dump_snapshot(
    settings: PlatformSettings,
    target: PlatformSettings,
    pg_dump: str,
    path: Path,
    snapshot_id: str,
    what: str,
) -> None:
    """Dump ``target``'s database at ``snapshot_id`` into ``path``; BackupError on failure."""
    done = subprocess.run(
        dump_argv(target, pg_dump, path, snapshot_id),
        env=db.client_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(f"{what} failed: {tail}", fix="fix the error above and run it again")
