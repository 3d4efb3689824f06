"""`serve`: the tracking server's single entrypoint in every deployment.

Wait for the database, make sure the schema is one this MLflow can run (create it
on an empty database, refuse an out-of-date one unless asked to upgrade), then
replace this process with ``mlflow server``.
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
    settings: PlatformSettings, *, upgrade: bool, progress: Callable[[str], None]
) -> tuple[list[str], dict[str, str]]:
    """Everything before the exec; returns the argv and environment of ``mlflow server``."""
    env = inherited_environment(keep_settings=False)
    env.update(server_env(settings))
    waited = db.wait_for_database(settings, progress=progress)
    if waited >= 1:
        progress(f"database answered after {waited:.0f}s")
    db.ensure_schema(settings, upgrade=upgrade or settings.db_upgrade, env=env, progress=progress)
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
    if settings.prometheus:
        (settings.state_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    if settings.identity_enabled:
        env.update(prepare_auth(settings, progress=progress))
    return server_argv(settings), env


def prepare_auth(settings: PlatformSettings, *, progress: Callable[[str], None]) -> dict[str, str]:
    """MLflow's user store ready before any worker starts; returns the workers' variables.

    Migrated once here under a lock (MLflow's workers would each migrate, unlocked), the
    kit's roles in place, the proxy's admin an MLflow admin, and on the first start with
    permissions the password file's users given ``MLOPS_AUTH_MIGRATE_ROLE``.
    """
    from mlops_platform import auth_store
    from mlops_platform.bootstrap import write_private
    from mlops_platform.users import list_users

    try:
        proxy_users = [u.name for u in list_users(settings)]
    except PlatformError:
        proxy_users = []  # the password file is nginx's; in compose this container lacks it
    result = auth_store.prepare(settings, proxy_users=proxy_users, progress=progress)
    if result.created_database:
        progress(f"created the auth database {settings.auth_db_name}")
    write_private(auth_ini_path(settings), auth_ini(settings))
    progress(
        f"permissions on: MLflow's user store in {settings.auth_db_name} "
        f"(revision {result.revision_after}), identity from the proxy"
    )
    return auth_env(settings, admin_password=auth_store.random_password())


def exec_server(argv: list[str], env: dict[str, str]) -> None:  # pragma: no cover - execs
    os.execvpe(argv[0], argv, env)
