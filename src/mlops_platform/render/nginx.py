"""nginx configuration from the shared template in ``nginx/templates/``."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

from mlops_platform.settings import PlatformSettings

TEMPLATE_NAME = "mlflow.conf.template"
_VAR = re.compile(r"\$\{(MLOPS_[A-Z0-9_]+)\}")


def template_text() -> str:
    return resources.files("mlops_platform").joinpath("templates", TEMPLATE_NAME).read_text()


# Idle kept-alive connections each nginx worker holds to the tracking server.
UPSTREAM_KEEPALIVE = "keepalive 32;"

# A unix socket path must fit sockaddr_un (108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 100


def auth_fail_socket(root: Path) -> str:
    """The unix socket of the failed-login counter, under the proxy's folder if it fits."""
    path = root / "tmp" / "auth-failures.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return str(path)
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return f"/tmp/mlops-auth-failures-{digest}.sock"


def template_variables(
    settings: PlatformSettings,
    *,
    upstream: str,
    snippets_dir: str,
    access_log: str | None = None,
    auth_fail_socket_path: str | None = None,
    lockout_cache: str | None = None,
) -> dict[str, str]:
    """The values the template's ``${MLOPS_*}`` names take (also the compose environment).

    The access log, the failed-login socket and the lockout cache default to
    ``logs/access.log``, ``tmp/auth-failures.sock`` and ``tmp/lockout`` beside
    ``snippets_dir`` (the local stack's layout).
    """
    root = Path(snippets_dir).parent
    listen = f"{settings.proxy_host}:{settings.proxy_port}"
    if settings.tls_enabled:
        listen += " ssl"
    return {
        "MLOPS_PROXY_LISTEN": listen,
        "MLOPS_ACCESS_LOG": access_log or str(root / "logs" / "access.log"),
        "MLOPS_AUTH_FAIL_SOCKET": auth_fail_socket_path or auth_fail_socket(root),
        "MLOPS_LOCKOUT_CACHE": lockout_cache or str(root / "tmp" / "lockout"),
        "MLOPS_UPSTREAM": upstream,
        "MLOPS_UPSTREAM_KEEPALIVE": UPSTREAM_KEEPALIVE
        if settings.server_tcp_nodelay
        else "# no keepalive: the server runs without its TCP_NODELAY fix",
        "MLOPS_USERS_FILE": str(settings.users_file),
        "MLOPS_NGINX_SNIPPETS": snippets_dir,
        "MLOPS_PROXY_BODY_SIZE": settings.proxy_body_size,
        "MLOPS_PROXY_TIMEOUT": str(settings.proxy_timeout_seconds),
        "MLOPS_PROXY_RATE_LIMIT": str(settings.proxy_rate_limit),
        "MLOPS_PROXY_RATE_BURST": str(settings.proxy_rate_burst),
        "MLOPS_PROXY_SECRET": settings.proxy_secret.get_secret_value()
        if settings.identity_enabled
        else "",
    }


def substitute(template: str, values: dict[str, str]) -> str:
    """envsubst restricted to ``${MLOPS_*}``; an unknown name is an error, not a blank."""
    missing = sorted({name for name in _VAR.findall(template) if name not in values})
    if missing:
        raise KeyError(f"template names unknown variables: {', '.join(missing)}")
    return _VAR.sub(lambda m: values[m.group(1)], template)


def site_conf(
    settings: PlatformSettings,
    *,
    upstream: str,
    snippets_dir: str,
    access_log: str | None = None,
    auth_fail_socket_path: str | None = None,
    lockout_cache: str | None = None,
) -> str:
    """The proxy's ``http``-level configuration: the same text compose's nginx renders."""
    values = template_variables(
        settings,
        upstream=upstream,
        snippets_dir=snippets_dir,
        access_log=access_log,
        auth_fail_socket_path=auth_fail_socket_path,
        lockout_cache=lockout_cache,
    )
    return substitute(template_text(), values)


def tls_snippet(settings: PlatformSettings) -> str | None:
    if not settings.tls_enabled:
        return None
    return (
        f"ssl_certificate {settings.proxy_tls_cert_file};\n"
        f"ssl_certificate_key {settings.proxy_tls_key_file};\n"
        "ssl_protocols TLSv1.2 TLSv1.3;\n"
        "ssl_session_cache shared:mlops_tls:10m;\n"
        'add_header Strict-Transport-Security "max-age=31536000" always;\n'
    )


def main_conf(root: Path, *, run_as: str | None) -> str:
    """A complete nginx.conf for the local stack, everything under ``root``."""
    user = f"user {run_as};\n" if run_as else ""
    return f"""# Written by mlops-platform for the local stack; regenerated on every `up`.
{user}worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
daemon off;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    access_log off;  # the site logs JSON to logs/access.log itself
    client_body_temp_path {root}/tmp/client_body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    include {root}/conf.d/*.conf;
}}
"""
