"""nginx configuration from the shared template in ``nginx/templates/``."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from mlops_platform.settings import PlatformSettings

TEMPLATE_NAME = "mlflow.conf.template"
_VAR = re.compile(r"\$\{(MLOPS_[A-Z0-9_]+)\}")


def template_text() -> str:
    return resources.files("mlops_platform").joinpath("templates", TEMPLATE_NAME).read_text()


# Idle kept-alive connections each nginx worker holds to the tracking server.
UPSTREAM_KEEPALIVE = "keepalive 32;"

# A unix socket path must fit sockaddr_un (108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 100
SOCKET_NAME = "auth-failures.sock"


def auth_fail_socket(folder: Path) -> str:
    """The failed-login counter's unix socket in ``folder``: a folder only nginx enters."""
    return str(folder / SOCKET_NAME)


def socket_fits(folder: Path) -> bool:
    return len(auth_fail_socket(folder)) <= MAX_SOCKET_PATH


def listen_address(host: str, port: int) -> str:
    """``host:port`` for nginx's ``listen``; an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def upstream_servers(addresses: list[str]) -> str:
    """The value of ``${MLOPS_UPSTREAM}`` (the template writes ``server ${MLOPS_UPSTREAM};``)
    for one or several tracking servers. A request that cannot reach one (connection
    refused) goes to the next: nginx's default ``proxy_next_upstream error timeout``,
    which never re-sends a non-idempotent request once it was sent."""
    if not addresses:
        raise ValueError("the upstream needs at least one tracking server")
    return ";\n    server ".join(addresses)


# The artifact-store upstream when nginx cannot fetch from the store itself: a
# placeholder no request goes to (the server streams downloads then).
NO_ARTIFACT_STORE = "127.0.0.1:1 down"


def artifact_store(endpoint: str | None) -> tuple[str, str, str]:
    """``(url, server, host)`` of the object store nginx fetches allowed downloads from:
    the endpoint as the server knows it, nginx's ``host:port``, and the Host header a
    presigned URL is signed for (no port when it is 80). ``("", "", "")`` for anything
    but an ``http://`` endpoint (an https one, AWS itself): nginx would have to check the
    store's certificate, so the tracking server streams those downloads itself."""
    if not endpoint:
        return "", "", ""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.path.strip("/"):
        return "", "", ""
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port or 80
    host = name if port == 80 else f"{name}:{port}"
    return endpoint.rstrip("/"), f"{name}:{port}", host


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
    ``snippets_dir`` (the local stack's layout; the stack passes a short private folder
    for the socket when that path is too long).
    """
    root = Path(snippets_dir).parent
    store_url, store_server, store_host = artifact_store(settings.s3_endpoint)
    listen = listen_address(settings.proxy_host, settings.proxy_port)
    if settings.tls_enabled:
        listen += " ssl"
    return {
        "MLOPS_PROXY_LISTEN": listen,
        "MLOPS_ACCESS_LOG": access_log or str(root / "logs" / "access.log"),
        "MLOPS_AUTH_FAIL_SOCKET": auth_fail_socket_path or auth_fail_socket(root / "tmp"),
        "MLOPS_LOCKOUT_CACHE": lockout_cache or str(root / "tmp" / "lockout"),
        "MLOPS_UPSTREAM": upstream,
        "MLOPS_ARTIFACT_STORE_URL": store_url,
        "MLOPS_ARTIFACT_STORE_SERVER": store_server or NO_ARTIFACT_STORE,
        "MLOPS_ARTIFACT_STORE_HOST": store_host or "localhost",
        "MLOPS_UPSTREAM_KEEPALIVE": UPSTREAM_KEEPALIVE
        if settings.server_tcp_nodelay
        else "# no keepalive: the server runs without its TCP_NODELAY fix",
        "MLOPS_USERS_FILE": str(settings.users_file),
        "MLOPS_NGINX_SNIPPETS": snippets_dir,
        "MLOPS_PROXY_BODY_SIZE": settings.proxy_body_size,
        "MLOPS_PROXY_TIMEOUT": str(settings.proxy_timeout_seconds),
        "MLOPS_PROXY_RATE_LIMIT": str(settings.proxy_rate_limit),
        "MLOPS_PROXY_RATE_BURST": str(settings.proxy_rate_burst),
        "MLOPS_PROXY_CONN_LIMIT": str(settings.proxy_conn_limit),
        "MLOPS_PROXY_CLIENT_TIMEOUT": str(settings.proxy_client_timeout_seconds),
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
    """The certificate lines, and the plain port beside TLS only when one is asked for.

    On that plain port a request without credentials is redirected to HTTPS and one with
    credentials is refused (the template's ``$mlops_https_redirect`` rule).
    """
    if not settings.tls_enabled:
        return None
    lines = [
        f"ssl_certificate {settings.proxy_tls_cert_file};",
        f"ssl_certificate_key {settings.proxy_tls_key_file};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_cache shared:mlops_tls:10m;",
        'add_header Strict-Transport-Security "max-age=31536000" always;',
    ]
    if settings.proxy_plain_port is not None:
        public = urlsplit(settings.resolved_public_url)
        origin = (
            f"https://{public.netloc}"
            if public.scheme == "https" and settings.public_url
            else f"https://$host:{settings.proxy_port}"
        )
        lines += [
            f"listen {listen_address(settings.proxy_host, settings.proxy_plain_port)};",
            "if ($scheme = http) {",
            "    set $mlops_https_redirect on;",
            "}",
            f'set $mlops_https_origin "{origin}";',
        ]
    return "\n".join(lines) + "\n"


def real_ip_snippet(settings: PlatformSettings) -> str | None:
    """Believe X-Forwarded-For from the trusted load balancers only (nginx real_ip).

    ``real_ip_recursive on`` walks the header from the right past every trusted hop, so
    the address used is the last one no trusted balancer vouches for: what a client
    prepends itself is never taken.
    """
    trusted = [item for item in settings.proxy_trusted_proxies.split(",") if item]
    if not trusted:
        return None
    lines = [f"set_real_ip_from {item};" for item in trusted]
    lines += ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;"]
    return "\n".join(lines) + "\n"


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
