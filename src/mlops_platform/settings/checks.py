"""The consistency checks of the settings: every problem, each naming the variable and the fix.

``PlatformSettings.problems()`` runs them in this order; ``load_settings`` refuses
settings that have any, and ``config check`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mlops_platform.settings.sources import ENV_PREFIX, S3_PURPOSE_FIELDS, SECRET_FIELDS

if TYPE_CHECKING:
    from mlops_platform.settings.model import PlatformSettings

PLACEHOLDERS = {"", "changethis", "changeme", "password", "secret", "admin", "mlflow", "minioadmin"}
MIN_PASSWORD_LENGTH = 12
# Database connections kept free of the server's pools: psql, backups, doctor, migrations.
RESERVED_CONNECTIONS = 10
MIN_PROXY_SECRET_LENGTH = 32


def problems(settings: PlatformSettings) -> list[str]:
    """Every problem with ``settings``, each naming the variable and the fix."""
    return [
        *_pool_problems(settings),
        *_secret_problems(settings),
        *_identity_problems(settings),
        *_tls_problems(settings),
        *_store_problems(settings),
        *_port_problems(settings),
        *_state_dir_problems(settings),
        *_disk_problems(settings),
    ]


def _pool_problems(settings: PlatformSettings) -> list[str]:
    """The server's pools must leave PostgreSQL room for admin work."""
    processes = settings.server_replicas * settings.workers
    connections = processes * (settings.db_pool_size + settings.db_pool_max_overflow)
    if connections + RESERVED_CONNECTIONS <= settings.db_max_connections:
        return []
    replicas = (
        f"MLOPS_SERVER_REPLICAS {settings.server_replicas} x "
        if settings.server_replicas > 1
        else ""
    )
    return [
        f"the server's pools may open {connections} database connections "
        f"({replicas}{settings.workers} workers x (MLOPS_DB_POOL_SIZE {settings.db_pool_size} + "
        f"MLOPS_DB_POOL_MAX_OVERFLOW {settings.db_pool_max_overflow})), more than "
        f"MLOPS_DB_MAX_CONNECTIONS={settings.db_max_connections} leaves after "
        f"{RESERVED_CONNECTIONS} for admin work; lower the pool, the workers or the "
        "replicas, or raise max_connections"
    ]


def _secret_problems(settings: PlatformSettings) -> list[str]:
    """Outside dev, every secret this process needs is set, not a placeholder, long enough."""
    if settings.is_dev:
        return []
    found: list[str] = []
    for name in SECRET_FIELDS:
        if _secret_not_asked(settings, name):
            continue
        value = getattr(settings, name).get_secret_value()
        if _secret_may_be_empty(settings, name, value):
            continue
        if problem := _weak_secret(name, value):
            found.append(problem)
    return found


def _secret_not_asked(settings: PlatformSettings, name: str) -> bool:
    """This process is not given ``name`` on purpose, or nothing here uses it."""
    if name in settings.secrets_not_needed_set():
        return True
    if name == "proxy_password" and not settings.proxy_enabled:
        return True
    if name == "proxy_secret" and not settings.identity_enabled:
        return True
    return bool(name == "db_password" and settings.db_url and urlsplit(settings.db_url).password)


def _secret_may_be_empty(settings: PlatformSettings, name: str, value: str) -> bool:
    if name.startswith("s3_") and settings.object_store == "external" and not value:
        return True  # an external S3 may grant access through an instance role
    # Not the kit's store: the S3 key serves every purpose.
    return name in S3_PURPOSE_FIELDS and not value and not settings.local_seaweedfs


def _weak_secret(name: str, value: str) -> str | None:
    var = f"{ENV_PREFIX}{name.upper()}"
    if value.strip().lower() in PLACEHOLDERS:
        return (
            f"{var} is empty or a placeholder; run `mlops-platform init` to "
            f"generate one, or set MLOPS_ENV=dev for a throwaway setup"
        )
    if name == "proxy_secret" and len(value) < MIN_PROXY_SECRET_LENGTH:
        return (
            f"{var} is shorter than {MIN_PROXY_SECRET_LENGTH} characters; "
            "run `mlops-platform init` to generate one"
        )
    if name in ("proxy_password", "db_password") and len(value) < MIN_PASSWORD_LENGTH:
        return (
            f"{var} is shorter than {MIN_PASSWORD_LENGTH} characters; "
            f"use a longer one (`mlops-platform init` generates 32)"
        )
    return None


def _identity_problems(settings: PlatformSettings) -> list[str]:
    """The proxy's identity reaches the server only with a secret; MLflow's user store
    needs its own database."""
    found: list[str] = []
    if (
        settings.identity_enabled
        and not settings.proxy_secret.get_secret_value()
        and "proxy_secret" not in settings.secrets_not_needed_set()
    ):
        found.append(
            "MLOPS_PROXY_SECRET is empty, so the tracking server would trust no proxy; "
            "run `mlops-platform init` (it adds missing secrets to an existing .env), "
            "or set MLOPS_AUTH_ENABLED=false"
        )
    if settings.auth_db_name == settings.db_parts()["name"]:
        found.append(
            f"MLOPS_AUTH_DB_NAME={settings.auth_db_name} is the tracking database; "
            "give MLflow's user store its own database (default mlflow_auth)"
        )
    return found


def _tls_problems(settings: PlatformSettings) -> list[str]:
    """The proxy's TLS settings go together, and name PEM files nginx can load."""
    found: list[str] = []
    if settings.proxy_plain_port is not None and not settings.tls_enabled:
        found.append(
            "MLOPS_PROXY_PLAIN_PORT is set without TLS; the proxy's port is already "
            "plain HTTP: unset it, or set MLOPS_PROXY_TLS_CERT_FILE and _KEY_FILE"
        )
    if bool(settings.proxy_tls_cert_file) != bool(settings.proxy_tls_key_file):
        found.append("MLOPS_PROXY_TLS_CERT_FILE and MLOPS_PROXY_TLS_KEY_FILE must be set together")
    for name in ("proxy_tls_cert_file", "proxy_tls_key_file"):
        path = getattr(settings, name)
        if path is not None and (problem := _pem_problem(path)):
            found.append(f"{ENV_PREFIX}{name.upper()}={path} {problem}")
    return found


def _store_problems(settings: PlatformSettings) -> list[str]:
    if settings.object_store == "minio" and not settings.s3_endpoint_url:
        return [
            "MLOPS_OBJECT_STORE=minio needs MLOPS_S3_ENDPOINT_URL (the local stack runs "
            "SeaweedFS; MinIO is a compose profile)"
        ]
    return []


def _port_problems(settings: PlatformSettings) -> list[str]:
    """Each service the local stack starts listens on its own port."""
    ports = {
        "MLOPS_SERVER_PORT": settings.server_port,
        "MLOPS_PROXY_PORT": settings.proxy_port if settings.proxy_enabled else None,
        "MLOPS_PROXY_PLAIN_PORT": settings.proxy_plain_port
        if settings.proxy_enabled and settings.tls_enabled
        else None,
        "MLOPS_DB_PORT": None if settings.external_db else settings.db_port,
        "MLOPS_S3_PORT": settings.s3_port if settings.object_store == "seaweedfs" else None,
        "MLOPS_MONITORING_PORT": settings.monitoring_port if settings.monitoring else None,
    }
    found: list[str] = []
    seen: dict[int, str] = {}
    for var, port in ports.items():
        if port is None:
            continue
        if port in seen:
            found.append(f"{var} and {seen[port]} are both {port}; give each its own port")
        seen[port] = var
    return found


def _state_dir_problems(settings: PlatformSettings) -> list[str]:
    if settings.state_dir.exists() and not settings.state_dir.is_dir():
        return [f"MLOPS_STATE_DIR={settings.state_dir} exists and is not a folder"]
    return []


def _disk_problems(settings: PlatformSettings) -> list[str]:
    if settings.disk_fail_free_percent >= settings.disk_warn_free_percent:
        return [
            f"MLOPS_DISK_FAIL_FREE_PERCENT={settings.disk_fail_free_percent:g} is not below "
            f"MLOPS_DISK_WARN_FREE_PERCENT={settings.disk_warn_free_percent:g}; "
            "the failure line must be the lower one (defaults 3 and 10)"
        ]
    return []


def _pem_problem(path: Path) -> str | None:
    """Why nginx could not load ``path`` as a PEM certificate or key, or None."""
    if not path.is_file():
        return "is not a readable file; point it at the PEM file"
    try:
        with path.open("rb") as pem:
            head = pem.read(65536)
    except OSError as exc:
        return f"cannot be read ({exc.strerror}); fix its permissions"
    if b"-----BEGIN " not in head:
        return "is not PEM (no -----BEGIN line); convert it with openssl"
    return None
