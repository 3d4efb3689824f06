"""`serve`: the tracking server's single entrypoint in every deployment.

Wait for the database, make sure the schema is one this MLflow can run (create it
on an empty database, refuse an out-of-date one unless asked to upgrade), then
run ``mlflow server`` in this process (:func:`run_server`).

Schema changes have one writer at a time: every change (MLflow's schema, the auth
store, the index pack) happens under :func:`db.schema_writer_lock`, so several ``serve``
processes started together on an empty database migrate once. Two other modes split
the work where pods must not migrate (Kubernetes):

- ``migrate``: the migrate step alone (``serve --migrate-only``, the Job): everything
  above under the lock, then exit;
- ``wait``: tracking pods (``serve --no-migrate``, and ``--wait-for-head`` in their init
  container): wait until the schema is at head, never migrate or build indexes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mlops_platform import db
from mlops_platform.errors import PlatformError
from mlops_platform.render.auth import auth_ini
from mlops_platform.render.server import auth_env, auth_ini_path, server_argv, server_env
from mlops_platform.settings import PlatformSettings, inherited_environment


def prepare(
    settings: PlatformSettings,
    *,
    upgrade: bool,
    progress: Callable[[str], None],
    migrate: bool = True,
    wait_seconds: float | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Everything before the server starts; returns the argv and environment of ``mlflow server``.

    ``migrate=False`` is the pods' mode: wait up to ``wait_seconds`` (default
    ``db_wait_seconds``) for the schema at head, change nothing.
    """
    env = inherited_environment(keep_settings=False)
    env.update(server_env(settings))
    waited = db.wait_for_database(settings, progress=progress)
    if waited >= 1:
        progress(f"database answered after {waited:.0f}s")
    if migrate:
        with db.schema_writer_lock(settings, progress=progress):
            write_schema(
                settings, upgrade=upgrade or settings.db_upgrade, env=env, progress=progress
            )
    else:
        timeout = settings.db_wait_seconds if wait_seconds is None else wait_seconds
        status = db.wait_for_head(settings, timeout=timeout, progress=progress)
        progress(f"schema is at head ({status.head}); this server never migrates")
    if settings.prometheus or settings.monitoring:  # monitoring scrapes /metrics
        (settings.state_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    if settings.identity_enabled:
        env.update(auth_server_env(settings, progress=progress))
    return server_argv(settings), env


def write_schema(
    settings: PlatformSettings,
    *,
    upgrade: bool,
    env: dict[str, str],
    progress: Callable[[str], None],
) -> None:
    """The one writer's work; the caller holds :func:`db.schema_writer_lock`.

    MLflow's schema (created on an empty database, migrated when ``upgrade``), MLflow's
    user store (migrated, the kit's roles and admin in place) and the index pack.
    """
    db.ensure_schema(settings, upgrade=upgrade, env=env, progress=progress)
    if settings.identity_enabled:
        prepare_auth_store(settings, progress=progress)
    if settings.db_apply_indexes:
        from mlops_platform import indexes

        try:
            for action in indexes.apply_pack(settings, progress=progress):
                if action.action != "skipped":
                    progress(f"index {action.name}: {action.action} in {action.seconds:.1f}s")
        except PlatformError as exc:
            # Only speed is at stake: the server must still start.
            progress(
                f"warning: index pack not applied ({exc}); the server starts without it; "
                "retry with `mlops-platform db indexes apply`"
            )


def migrate_only(
    settings: PlatformSettings,
    *,
    progress: Callable[[str], None],
    wait_seconds: float | None,
    dump: bool = True,
) -> db.UpgradeResult:
    """The migrate step (``serve --migrate-only``, the Kubernetes Job).

    Under the schema-writer lock: ``db upgrade``'s guarded path (a checked dump of each
    database it changes, MLflow's migration, a verification), the auth store's roles,
    then the index pack. A second run finds everything at head and changes nothing.
    """
    db.wait_for_database(settings, timeout=wait_seconds, progress=progress)
    with db.schema_writer_lock(settings, progress=progress):
        result = db.guarded_upgrade(settings, dump=dump, progress=progress, check_running=False)
        write_schema(settings, upgrade=False, env={}, progress=progress)
    return result


def wait_for_head(
    settings: PlatformSettings, *, progress: Callable[[str], None], wait_seconds: float | None
) -> db.SchemaStatus:
    """The init container's step (``serve --wait-for-head``): the database, then the
    schema at head; nothing is changed."""
    timeout = settings.db_wait_seconds if wait_seconds is None else wait_seconds
    db.wait_for_database(settings, timeout=timeout, progress=progress)
    return db.wait_for_head(settings, timeout=timeout, progress=progress)


def prepare_auth_store(settings: PlatformSettings, *, progress: Callable[[str], None]) -> None:
    """MLflow's user store migrated, the kit's roles and admin in place (the writer's part).

    Migrated once here (MLflow's workers would each migrate, unlocked), and on the first
    start with permissions the password file's users given ``MLOPS_AUTH_MIGRATE_ROLE``.
    """
    from mlops_platform import auth_store
    from mlops_platform.users import list_users

    try:
        proxy_users = [u.name for u in list_users(settings)]
    except PlatformError:
        proxy_users = []  # the password file is nginx's; in compose this container lacks it
    result = auth_store.prepare(settings, proxy_users=proxy_users, progress=progress)
    if result.created_database:
        progress(f"created the auth database {settings.auth_db_name}")


def auth_server_env(
    settings: PlatformSettings, *, progress: Callable[[str], None]
) -> dict[str, str]:
    """The auth app's ini file and the workers' variables (no database change)."""
    from mlops_platform.bootstrap import write_private

    write_private(auth_ini_path(settings), auth_ini(settings))
    progress(
        f"permissions on: MLflow's user store in {settings.auth_db_name}, identity from the proxy"
    )
    from mlops_platform import auth_store

    return auth_env(settings, admin_password=auth_store.random_password())


def run_server(argv: list[str], env: dict[str, str]) -> None:  # pragma: no cover - serves
    """Run ARGV (``server_argv``'s ``python -m mlops_platform.mlflow_server ...``) with ENV
    as the whole environment, in this process: the same pid, so a supervisor's signals reach
    MLflow's CLI, which passes them on to uvicorn.

    Not an exec: the schema and auth-store checks have imported MLflow already, and a new
    interpreter would import it again before starting uvicorn (~2 s of CPU on every start).
    Another command line is exec'd as it is.
    """
    from mlops_platform import mlflow_server

    if argv[1:3] != ["-m", mlflow_server.__name__]:
        os.execvpe(argv[0], argv, env)
    os.environ.clear()
    os.environ.update(env)
    mlflow_server.main(argv[3:])
