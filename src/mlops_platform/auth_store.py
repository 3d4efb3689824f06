"""MLflow's user and permission store, as the kit runs it.

The store is MLflow's own (the ``basic-auth`` app's SQLAlchemy store: users, roles,
READ/USE/EDIT/MANAGE grants per experiment and registered model); this module only
decides where it lives and keeps it in the shape the kit's roles need:

- its own PostgreSQL database (``MLOPS_AUTH_DB_NAME``) beside the tracking database;
- migrated once, by ``serve`` (or ``db upgrade``), under a PostgreSQL advisory lock:
  MLflow migrates it from every worker without one, and replicas starting together
  would race;
- the kit's roles (``viewer``, ``editor``, ``approver``) as MLflow roles of the default
  workspace, ``admin`` as MLflow's admin flag;
- the proxy's users created in it with a role (``users add``) or on first sight.

Nobody logs in with the passwords MLflow stores: nginx checks the password, the
tracking server trusts the user name nginx forwards (``auth_app``). Each MLflow user
therefore gets a random password nobody knows.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy

from mlops_platform.auth_roles import (
    GRANT_KINDS,
    KIT_ROLES,
    LEVELS,
    ROLE_RANK,
    SERVICE,
    WORKSPACE,
    AuthStoreError,
    UserRow,
    check_role,
    create_user,
    delete_user,
    describe,
    ensure_user,
    grant,
    grants_of,
    list_rows,
    random_password,
    revoke,
    role_of,
    role_permissions,
    set_role,
    user_roles,
)
from mlops_platform.errors import ConfigError, DatabaseUnavailableError
from mlops_platform.settings import PlatformSettings

if TYPE_CHECKING:  # MLflow's auth package is imported lazily: it is heavy.
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

# The roles and users (what ``users`` does) live in ``auth_roles``; importable from here.
__all__ = [
    "GRANT_KINDS",
    "KIT_ROLES",
    "LEVELS",
    "MIGRATION_LOCK",
    "ROLE_RANK",
    "SERVICE",
    "WORKSPACE",
    "AuthStoreError",
    "PrepareResult",
    "UserRow",
    "check_role",
    "create_user",
    "delete_user",
    "describe",
    "ensure_database",
    "ensure_user",
    "grant",
    "grants_of",
    "head_revision",
    "list_rows",
    "migration_lock",
    "open_store",
    "prepare",
    "random_password",
    "revision",
    "revoke",
    "role_of",
    "role_permissions",
    "set_role",
    "sync_roles",
    "user_roles",
]

# pg_advisory_lock key of the auth store's migration ("mlopsaut" as an int64).
MIGRATION_LOCK = 0x6D6C6F7073617574


# -- the database --------------------------------------------------------------


def ensure_database(settings: PlatformSettings) -> bool:
    """Create the auth database if it is missing; True if it was created."""
    from mlops_platform.db import make_engine

    name = settings.auth_db_name
    engine = make_engine(settings).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if exists:
                return False
            try:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
            except (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.IntegrityError):
                exists = conn.execute(
                    sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).scalar()
                if exists:  # another replica was faster
                    return False
                user = settings.db_parts()["user"]
                raise ConfigError(
                    f"the auth database {name} does not exist and {user} may not create it",
                    fix=f"create it: CREATE DATABASE {name} OWNER {user}; (or grant CREATEDB)",
                ) from None
            return True
    except sqlalchemy.exc.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"cannot reach PostgreSQL for the auth store: {str(exc.orig).strip()[:200]}",
            fix="check MLOPS_DB_* and that the database runs (mlops-platform doctor)",
        ) from None
    finally:
        engine.dispose()


def _engine(settings: PlatformSettings) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(
        settings.auth_database_url(with_password=True),
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


@contextlib.contextmanager
def migration_lock(settings: PlatformSettings) -> Iterator[None]:
    """Hold the auth store's advisory lock (a session lock on its own connection)."""
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK}
                )
                conn.commit()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The Alembic head of the installed MLflow's auth store (read from its files)."""
    from mlops_platform import migrations

    return migrations.auth_chain().head()


def revision(settings: PlatformSettings) -> str | None:
    """The auth store's Alembic revision; None for an empty (or missing) database."""
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("alembic_version_auth"):
                return None
            return conn.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version_auth")
            ).scalar()
    except sqlalchemy.exc.OperationalError as exc:
        if "does not exist" in str(exc.orig):
            return None
        raise DatabaseUnavailableError(
            f"cannot reach the auth database {settings.auth_db_name}: "
            f"{str(exc.orig).strip()[:200]}",
            fix="check MLOPS_DB_* and that the database runs (mlops-platform doctor)",
        ) from None
    finally:
        engine.dispose()


STORE_MODULE = "mlflow.server.auth.sqlalchemy_store"
# The packages whose __init__ is the tracking server and the auth app (Flask, every
# handler, FastAPI, the gateway: ~3 s of CPU), not anything the store module uses.
_SERVER_PACKAGES = ("mlflow.server", "mlflow.server.auth")


def _store_class() -> type[SqlAlchemyStore]:
    """MLflow's user store class, without starting MLflow's server code in a CLI call.

    A submodule's import runs its packages' ``__init__`` first, and MLflow's are the whole
    tracking server and auth app: every ``users`` call paid ~3 s of CPU for code it never
    runs. Where they are not loaded yet, the store's module is imported under two bare
    package entries (their search path, nothing run) that are removed right after, so a
    later ``import mlflow.server`` runs the real package, which finds this module loaded.
    """
    import sys

    loaded = sys.modules.get(STORE_MODULE)
    if loaded is None:
        loaded = _import_under_bare_packages(STORE_MODULE, _SERVER_PACKAGES)
    if loaded is None:
        # Importing it imports MLflow's server, which warns about Starlette.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
        return SqlAlchemyStore
    store: type[SqlAlchemyStore] = loaded.SqlAlchemyStore
    return store


def _import_under_bare_packages(module: str, packages: tuple[str, ...]) -> Any:
    """MODULE imported with PACKAGES standing as bare entries; None (nothing left behind)
    where that fails, for the caller's ordinary import."""
    import importlib
    import importlib.util
    import sys
    import types

    if any(name in sys.modules for name in packages):
        return None  # never stand in for a package that is loaded
    placed = []
    try:
        for name in packages:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.submodule_search_locations is None:
                return None
            bare = types.ModuleType(name)
            bare.__spec__ = spec
            bare.__path__ = list(spec.submodule_search_locations)
            sys.modules[name] = bare
            placed.append(name)
        return importlib.import_module(module)
    except (ImportError, AttributeError):  # a future store that needs the server's package
        for name in [m for m in sys.modules if m.startswith(packages[0] + ".")]:
            del sys.modules[name]  # half-imported submodules: the ordinary import redoes them
        return None
    finally:
        for name in placed:
            sys.modules.pop(name, None)


def open_store(settings: PlatformSettings) -> SqlAlchemyStore:
    """MLflow's store on the auth database, migrated to MLflow's head under the lock."""
    SqlAlchemyStore = _store_class()

    ensure_database(settings)
    store = SqlAlchemyStore()
    with migration_lock(settings):
        store.init_db(settings.auth_database_url(with_password=True))
    return store


# -- preparing the store for the server ------------------------------------------


@dataclass
class PrepareResult:
    created_database: bool
    revision_before: str | None
    revision_after: str
    roles_created: list[str] = field(default_factory=list)
    migrated_users: list[str] = field(default_factory=list)
    migrated_role: str = ""


def prepare(
    settings: PlatformSettings,
    *,
    proxy_users: list[str],
    progress: Callable[[str], None] = lambda _m: None,
) -> PrepareResult:
    """Everything the server needs of the store, once, before any worker starts.

    Under the migration lock: migrate, make the kit's roles match the settings, make
    ``proxy_user`` an MLflow admin, and on the first run give ``proxy_users`` (the
    password file's users from before roles) ``auth_migrate_role``.
    """
    SqlAlchemyStore = _store_class()
    created = ensure_database(settings)
    before = revision(settings)
    store = SqlAlchemyStore()
    with migration_lock(settings):
        store.init_db(settings.auth_database_url(with_password=True))
        after = revision(settings) or ""
        if before != after:
            progress(f"auth store migrated: {before or 'empty'} -> {after}")
        first_run = not _has_kit_roles(store)
        roles_created = sync_roles(store, settings)
        _ensure_admin(store, settings.proxy_user)
        migrated: list[str] = []
        if first_run:
            for name in proxy_users:
                if name == settings.proxy_user or store.has_user(name):
                    continue
                create_user(store, name, settings.auth_migrate_role)
                migrated.append(name)
            if migrated:
                progress(
                    f"permissions are on: {len(migrated)} existing proxy user(s) given the role "
                    f"{settings.auth_migrate_role} (MLOPS_AUTH_MIGRATE_ROLE): "
                    + ", ".join(migrated)
                )
    store.engine.dispose()
    return PrepareResult(
        created_database=created,
        revision_before=before,
        revision_after=after,
        roles_created=roles_created,
        migrated_users=migrated,
        migrated_role=settings.auth_migrate_role,
    )


def _has_kit_roles(store: SqlAlchemyStore) -> bool:
    names = {r.name for r in store.list_roles([WORKSPACE])}
    return all(name in names for name in KIT_ROLES)


def sync_roles(store: SqlAlchemyStore, settings: PlatformSettings) -> list[str]:
    """Create the kit's roles and make their grants exactly the settings'; returns created."""
    wanted = role_permissions(settings)
    existing = {r.name: r for r in store.list_roles([WORKSPACE])}
    created = []
    for name in KIT_ROLES:
        role = existing.get(name)
        if role is None:
            try:
                role = store.create_role(name, WORKSPACE, description=f"mlops-platform {name}")
                created.append(name)
            except Exception:  # created by a racing process: take theirs
                role = store.get_role_by_name(WORKSPACE, name)
        have = {
            (p.resource_type, p.resource_pattern): p for p in store.list_role_permissions(role.id)
        }
        want = {(t, pat): perm for t, pat, perm in wanted[name]}
        for key, perm in want.items():
            if key not in have:
                store.add_role_permission(role.id, key[0], key[1], perm)
            elif have[key].permission != perm:
                store.update_role_permission(have[key].id, perm)
        for key, rp in have.items():
            if key not in want:
                store.remove_role_permission(rp.id)
    return created


def _ensure_admin(store: SqlAlchemyStore, name: str) -> None:
    if not store.has_user(name):
        try:
            store.create_user(name, random_password(), is_admin=True)
            return
        except Exception:
            if not store.has_user(name):
                raise
    if not store.get_user(name).is_admin:
        store.update_user(name, is_admin=True)
