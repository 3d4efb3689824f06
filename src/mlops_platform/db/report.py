"""What ``db status`` shows, and the checks after an upgrade: the revision against the
head, pending migrations, sizes, a few basic reads, the running server's MLflow version."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy

from mlops_platform.db.auth import AuthStoreStatus, auth_store_status
from mlops_platform.db.connection import connection, first_line, where
from mlops_platform.db.schema import Migration, SchemaStatus, pending_migrations, schema_status
from mlops_platform.hosts import url_host
from mlops_platform.settings import PlatformSettings


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


def database_report(settings: PlatformSettings, *, top: int = 8) -> DatabaseReport:
    """Revision, head, pending migrations, server version and the largest tables."""
    from mlops_platform.migrations import mlflow_version

    with connection(settings) as conn:
        server_version = str(conn.execute(sqlalchemy.text("SHOW server_version")).scalar())
        size = int(
            conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar()
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
    status = schema_status(settings)
    pending = pending_migrations(status.current) if status.state == "outdated" else []
    if status.state == "empty":
        pending = pending_migrations(None)
    return DatabaseReport(
        where=where(settings),
        server_version=server_version,
        mlflow_version=mlflow_version(),
        schema=status,
        pending=pending,
        database_bytes=size,
        largest_tables=[TableSize(r[0], int(r[1]), int(r[2])) for r in rows],
        auth_db=settings.auth_db_name if settings.identity_enabled else None,
        auth=auth_store_status(settings) if settings.identity_enabled else None,
    )


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
    with connection(settings, checked=False) as conn:
        for sql in VERIFY_QUERIES:
            try:
                conn.execute(sqlalchemy.text(sql)).scalar()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                conn.rollback()
                failures.append(f"{sql}: {first_line(exc)}")
    return failures


def running_server_version(settings: PlatformSettings, *, timeout: float = 3.0) -> str | None:
    """The MLflow version the tracking server answers at GET /version, None when it is down."""
    import urllib.error
    import urllib.request

    url = f"http://{url_host(settings.server_host)}:{settings.server_port}/version"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return response.read().decode("utf-8", "replace").strip() or None
    except (urllib.error.URLError, OSError, ValueError):
        return None
