"""MLflow's user and permission store (auth_store): its own database on the same server,
its own Alembic revision against the installed MLflow's auth head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy

from mlops_platform import migrations
from mlops_platform.db.connection import connection, first_line
from mlops_platform.errors import PlatformError, SchemaError
from mlops_platform.settings import PlatformSettings


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


def auth_database_exists(settings: PlatformSettings) -> bool:
    with connection(settings) as conn:
        return bool(
            conn.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                {"n": settings.auth_db_name},
            ).scalar()
        )


def auth_head_revision() -> str:
    """The Alembic head of the installed MLflow's auth store."""
    from mlops_platform import auth_store

    return auth_store.head_revision()


def known_auth_revision(revision: str) -> bool:
    return migrations.auth_chain().known(revision)


def auth_store_status(settings: PlatformSettings) -> AuthStoreStatus:
    """Where the auth store stands: missing database, empty, at MLflow's head, or not."""
    from mlops_platform import auth_store

    head = auth_head_revision()
    name = settings.auth_db_name
    if not auth_database_exists(settings):
        return AuthStoreStatus(name, "missing", None, head)
    current = auth_store.revision(settings)
    if current is None:
        return AuthStoreStatus(name, "empty", None, head)
    if current == head:
        return AuthStoreStatus(name, "current", current, head)
    if known_auth_revision(current):
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
            f"migrating the auth store {settings.auth_db_name} failed: {first_line(exc)}",
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
