"""Reaching the database: the engine, a checked connection, the bounded wait, and the
settings of the auth store's database on the same server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy.engine import Engine

from mlops_platform.errors import DatabaseUnavailableError
from mlops_platform.settings import PlatformSettings


def make_engine(settings: PlatformSettings) -> Engine:
    """An engine for the tracking DB. The password stays in this process."""
    return sqlalchemy.create_engine(
        settings.database_url(with_password=True),
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def connect_checked(settings: PlatformSettings) -> Engine:
    """An engine whose first connection worked; a typed error naming the fix otherwise."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        error = first_line(exc)
        raise DatabaseUnavailableError(
            f"cannot connect to the database at {where(settings)} ({error})",
            fix=_connection_hint(error),
        ) from None
    return engine


@contextlib.contextmanager
def connection(
    settings: PlatformSettings, *, checked: bool = True, autocommit: bool = False
) -> Iterator[sqlalchemy.Connection]:
    """One connection to the database ``settings`` names; its engine is disposed after.

    ``checked``: a database that does not answer raises ``DatabaseUnavailableError``
    naming the fix (:func:`connect_checked`); otherwise SQLAlchemy's own error propagates.
    ``autocommit``: outside transactions (what CONCURRENTLY and VACUUM need).
    """
    engine = connect_checked(settings) if checked else make_engine(settings)
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


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
                last_error = first_line(exc)
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


def first_line(exc: BaseException) -> str:
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


def where(settings: PlatformSettings) -> str:
    p = settings.db_parts()
    return f"{p['host']}:{p['port']}/{p['name']}"


def auth_settings(settings: PlatformSettings) -> PlatformSettings:
    """The same server and login, pointed at the auth store's database.

    What the dump, restore and report helpers of this package take to work on the auth
    store instead of the tracking database.
    """
    if settings.db_url:
        url = urlsplit(settings.db_url)._replace(path="/" + settings.auth_db_name).geturl()
        return settings.model_copy(update={"db_url": url})
    return settings.model_copy(update={"db_name": settings.auth_db_name})
