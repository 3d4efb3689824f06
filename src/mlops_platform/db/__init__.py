"""The tracking database: connect with a bounded wait, read and compare the schema revision.

The package, one module per part:

- ``connection``: the engine, :func:`connection` (one checked connection, its engine
  disposed after), the bounded wait, the auth store's database on the same server
- ``schema``: the revision against MLflow's head, creation, upgrade, the wait for head
- ``locks``: the schema-writer advisory lock
- ``auth``: MLflow's user and permission store, its revision and upgrade
- ``pgtools``: PostgreSQL's client programs, dump and restore
- ``report``: what ``db status`` shows, the reads checked after an upgrade
- ``upgrade``: ``db upgrade``, the guarded upgrade

Everything callers use is importable from ``mlops_platform.db`` itself.
"""

from mlops_platform.db.auth import (
    AuthStoreStatus,
    auth_database_exists,
    auth_head_revision,
    auth_store_status,
    known_auth_revision,
    upgrade_auth_store,
)
from mlops_platform.db.connection import (
    auth_settings,
    connect_checked,
    connection,
    first_line,
    make_engine,
    wait_for_database,
    where,
)
from mlops_platform.db.locks import SCHEMA_WRITER_LOCK, schema_writer_lock
from mlops_platform.db.pgtools import (
    DumpResult,
    client_binary,
    client_env,
    conn_args,
    dump_database,
    restore_command,
    restore_dump,
)
from mlops_platform.db.report import (
    VERIFY_QUERIES,
    DatabaseReport,
    TableSize,
    database_report,
    running_server_version,
    verify_queries,
)
from mlops_platform.db.schema import (
    Migration,
    SchemaState,
    SchemaStatus,
    create_schema,
    ensure_schema,
    head_revision,
    known_revision,
    pending_migrations,
    schema_status,
    script_directory,
    upgrade_argv,
    upgrade_schema,
    wait_for_head,
)
from mlops_platform.db.upgrade import UpgradeResult, guarded_upgrade

__all__ = [
    "SCHEMA_WRITER_LOCK",
    "VERIFY_QUERIES",
    "AuthStoreStatus",
    "DatabaseReport",
    "DumpResult",
    "Migration",
    "SchemaState",
    "SchemaStatus",
    "TableSize",
    "UpgradeResult",
    "auth_database_exists",
    "first_line",
    "known_auth_revision",
    "known_revision",
    "script_directory",
    "auth_head_revision",
    "auth_settings",
    "auth_store_status",
    "client_binary",
    "client_env",
    "conn_args",
    "connect_checked",
    "connection",
    "create_schema",
    "database_report",
    "dump_database",
    "ensure_schema",
    "guarded_upgrade",
    "head_revision",
    "make_engine",
    "pending_migrations",
    "restore_command",
    "restore_dump",
    "running_server_version",
    "schema_status",
    "schema_writer_lock",
    "upgrade_argv",
    "upgrade_auth_store",
    "upgrade_schema",
    "verify_queries",
    "wait_for_database",
    "wait_for_head",
    "where",
]
