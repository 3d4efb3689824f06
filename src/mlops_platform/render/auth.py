"""The configuration of MLflow's basic-auth app, as the kit runs it (``auth_app``)."""

from __future__ import annotations

from mlops_platform.settings import PlatformSettings

AUTHORIZATION_FUNCTION = "mlops_platform.auth_app:authenticate"
# What nginx sets on every request it passes (the template's proxy_set_header lines).
USER_HEADER = "X-Forwarded-User"
SECRET_HEADER = "X-Mlops-Proxy-Secret"


def auth_ini(settings: PlatformSettings) -> str:
    """``MLFLOW_AUTH_CONFIG_PATH``'s file. No password: the server has ``PGPASSWORD``.

    ``default_permission`` is NO_PERMISSIONS: what a user may read comes from the kit's
    roles (``auth_store.role_permissions``) and from grants, never from a floor that a
    user without a role would inherit.
    """
    return (
        "# Written by `mlops-platform serve` on every start; see docs/access.md.\n"
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {settings.auth_database_url(with_password=False)}\n"
        f"admin_username = {settings.proxy_user}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
        "grant_default_workspace_access = false\n"
    )


def identity_headers(settings: PlatformSettings) -> dict[str, str]:
    """The headers nginx adds for the admin: what the kit's own direct checks send.

    Empty when permissions are off. Only the kit's readiness and health checks use it;
    everything else goes through nginx.
    """
    if not settings.identity_enabled:
        return {}
    return {
        SECRET_HEADER: settings.proxy_secret.get_secret_value(),
        USER_HEADER: settings.proxy_user,
    }
