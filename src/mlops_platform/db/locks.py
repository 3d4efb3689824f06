"""One writer for the schema: a PostgreSQL advisory lock held while the schema changes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import sqlalchemy

from mlops_platform.db.connection import connection
from mlops_platform.settings import PlatformSettings

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
    with connection(settings, checked=False) as conn:
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
