"""The values the overlay carries, from the settings: refusals first, then the env files,
the Secret's keys per container, the images and the checksum over them."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from pydantic import SecretStr

from mlops_platform.errors import ConfigError
from mlops_platform.render import nginx
from mlops_platform.render.k8s.options import (
    HTPASSWD_KEY,
    JOB_CONNECTIONS,
    LOOPBACK,
    MIGRATE_JOB,
    NGINX_PORT,
    NGINX_SNIPPETS_DIR,
    NGINX_USERS_DIR,
    NOT_CARRIED,
    S3_KEYS,
    SECRETS_MOUNT,
    TRACKING_SECRET_KEYS,
    K8sOptions,
)
from mlops_platform.settings import (
    ENV_PREFIX,
    RESERVED_CONNECTIONS,
    SECRET_FIELDS,
    PlatformSettings,
)

# -- refusals -------------------------------------------------------------------


def tracking_host(settings: PlatformSettings, opts: K8sOptions) -> str:
    if opts.tracking_host:
        return opts.tracking_host
    return urlsplit(settings.resolved_public_url).hostname or ""


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (``500m``, ``2``, ``1.5``) in cores."""
    text = quantity.strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ConfigError(
            f"--tracking-cpu {quantity!r} is not a CPU quantity", fix="pass e.g. 500m, 1 or 2"
        ) from None


def workers(settings: PlatformSettings, opts: K8sOptions) -> int:
    """Uvicorn workers of a tracking pod: the setting, or one per requested core (1-4).

    Never the node's cores: a pod sees them all, and would start more workers than its
    CPU request pays for.
    """
    if settings.server_workers:
        return settings.server_workers
    return max(1, min(4, math.floor(cpu_cores(opts.tracking_cpu))))


def check(settings: PlatformSettings, opts: K8sOptions) -> None:
    """Refuse settings that only work on one host, or that would exhaust PostgreSQL."""
    host = str(settings.db_parts()["host"] or "")
    if host in LOOPBACK:
        var = "MLOPS_DB_URL" if settings.db_url else "MLOPS_DB_HOST"
        raise ConfigError(
            f"{var} points at {host}, the local stack's database, which pods cannot reach",
            fix="set MLOPS_DB_URL to your PostgreSQL, e.g. "
            "postgresql://mlflow@db.example.internal:5432/mlflow?sslmode=verify-full",
        )
    public = tracking_host(settings, opts)
    if not public or public in LOOPBACK:
        raise ConfigError(
            f"the public host is {public or 'empty'} (MLOPS_PUBLIC_URL is "
            f"{settings.public_url or 'unset'})",
            fix="set MLOPS_PUBLIC_URL to the URL people will use, e.g. "
            "https://mlflow.example.com (or pass --tracking-host)",
        )
    endpoint = settings.s3_endpoint
    s3_host = urlsplit(endpoint).hostname if endpoint else None
    if settings.object_store != "external" or (s3_host and s3_host in LOOPBACK):
        raise ConfigError(
            f"the object store is the local stack's {settings.object_store} at "
            f"{endpoint or 'AWS'}, which pods cannot reach",
            fix="set MLOPS_OBJECT_STORE=external and MLOPS_S3_ENDPOINT_URL to your S3 "
            "endpoint (leave it empty for AWS S3)",
        )
    per_replica = workers(settings, opts) * (settings.db_pool_size + settings.db_pool_max_overflow)
    total = opts.tracking_replicas * per_replica + JOB_CONNECTIONS
    if total + RESERVED_CONNECTIONS > settings.db_max_connections:
        raise ConfigError(
            f"{opts.tracking_replicas} replicas x {workers(settings, opts)} workers x "
            f"(MLOPS_DB_POOL_SIZE {settings.db_pool_size} + MLOPS_DB_POOL_MAX_OVERFLOW "
            f"{settings.db_pool_max_overflow}) + {JOB_CONNECTIONS} for jobs may open {total} "
            f"connections, more than MLOPS_DB_MAX_CONNECTIONS={settings.db_max_connections} "
            f"leaves after {RESERVED_CONNECTIONS} for admin work",
            fix="lower --replicas or the pool, or set MLOPS_DB_MAX_CONNECTIONS to your "
            "PostgreSQL's max_connections",
        )


# -- values ---------------------------------------------------------------------


def s3_keys_given(settings: PlatformSettings) -> bool:
    """False: S3 access comes from the pod's cloud identity (IRSA, workload identity)."""
    return bool(settings.s3_access_key_id.get_secret_value())


def db_tls_keys(settings: PlatformSettings) -> tuple[str, ...]:
    """Files of the Secret that ``db_url``'s query names under the secrets mount
    (``sslrootcert``, ``sslcert``, ``sslkey``): every container that reaches the
    database mounts them."""
    query = urlsplit(settings.db_url).query if settings.db_url else ""
    out = []
    for name, value in parse_qsl(query):
        if name in ("sslrootcert", "sslcert", "sslkey") and value.startswith(SECRETS_MOUNT + "/"):
            out.append(value[len(SECRETS_MOUNT) + 1 :])
    return tuple(out)


def secret_keys(settings: PlatformSettings, keys: tuple[str, ...]) -> tuple[str, ...]:
    """``keys`` without the S3 keys when the pods get S3 access from their identity,
    with the database's TLS files when ``db_url`` names them."""
    if not s3_keys_given(settings):
        keys = tuple(k for k in keys if k not in S3_KEYS)
    if "db_password" in keys:
        keys = (*keys, *(k for k in db_tls_keys(settings) if k not in keys))
    return keys


def not_needed(keys: tuple[str, ...]) -> str:
    """MLOPS_SECRETS_NOT_NEEDED of a container given ``keys``: every other secret."""
    return ",".join(name for name in SECRET_FIELDS if name not in keys)


def database_url(settings: PlatformSettings) -> str:
    """MLOPS_DB_URL without its password (a file of the Secret), its query kept."""
    p = settings.db_parts()
    scheme = urlsplit(settings.db_url).scheme if settings.db_url else "postgresql"
    query = urlsplit(settings.db_url).query if settings.db_url else ""
    host = f"[{p['host']}]" if ":" in str(p["host"]) else str(p["host"])
    url = f"{scheme}://{quote(str(p['user']), safe='')}@{host}:{p['port']}/{p['name']}"
    return f"{url}?{query}" if query else url


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_env(settings: PlatformSettings, opts: K8sOptions) -> dict[str, str]:
    """Every non-secret setting of the tracking pods, as ``MLOPS_*`` variables.

    Secrets (``SecretStr`` fields) come from the Secret's files; ``NOT_CARRIED`` says
    where the others went. Values the pod decides (loopback bind, workers, public URL,
    allowed hosts, never migrating) replace the host's.
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in NOT_CARRIED or isinstance(value, SecretStr) or value is None:
            continue
        env[f"{ENV_PREFIX}{name.upper()}"] = _env_value(value)
    host = tracking_host(settings, opts)
    service = f"mlflow-tracking.{opts.namespace}.svc"
    extra_hosts = [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    hosts = [host, "mlflow-tracking", service, f"{service}.cluster.local", *extra_hosts]
    env.update(
        {
            "MLOPS_STATE_DIR": "/tmp/mlops-platform",
            "MLOPS_SECRETS_DIR": SECRETS_MOUNT,
            "MLOPS_SECRETS_NOT_NEEDED": not_needed(secret_keys(settings, TRACKING_SECRET_KEYS)),
            "MLOPS_DB_URL": database_url(settings),
            # The migrate Job is the one writer; pods wait for head (serve --no-migrate).
            "MLOPS_DB_UPGRADE": "false",
            # The pod's loopback: only the nginx beside it reaches the server.
            "MLOPS_SERVER_HOST": "127.0.0.1",
            "MLOPS_SERVER_WORKERS": str(workers(settings, opts)),
            "MLOPS_PUBLIC_URL": f"https://{host}",
            "MLOPS_ALLOWED_HOSTS": ",".join(dict.fromkeys(hosts)),
            # The nginx in the pod is the proxy: it logs people in and forwards who.
            "MLOPS_PROXY_ENABLED": "true",
        }
    )
    return dict(sorted(env.items()))


def nginx_env(settings: PlatformSettings) -> dict[str, str]:
    """The template's values in the tracking pod (the image's envsubst renders it).

    The proxy secret is not among them: the entrypoint snippet reads it from its file.
    """
    values = nginx.template_variables(
        settings,
        upstream=f"127.0.0.1:{settings.server_port}",
        # TLS ends at the Ingress; the only snippet is real-ip.conf (trusted proxies).
        snippets_dir=NGINX_SNIPPETS_DIR,
        access_log="/dev/stdout",
        auth_fail_socket_path="/tmp/mlops-auth-failures.sock",
        lockout_cache="/var/cache/nginx/mlops-lockout",
    )
    values.pop("MLOPS_PROXY_SECRET")
    values["MLOPS_PROXY_LISTEN"] = str(NGINX_PORT)
    values["MLOPS_USERS_FILE"] = f"{NGINX_USERS_DIR}/{HTPASSWD_KEY}"
    return {
        "NGINX_ENVSUBST_FILTER": "MLOPS_",
        "MLOPS_PROXY_SECRET_FILE": f"{SECRETS_MOUNT}/proxy_secret",
        **values,
    }


def proxy_secret_snippet() -> str:
    """scripts/nginx-proxy-secret, as the compose nginx sources it."""
    from importlib import resources

    return (
        resources.files("mlops_platform").joinpath("templates", "nginx-proxy-secret.envsh")
    ).read_text()


def env_file(values: dict[str, str]) -> str:
    for key, value in values.items():
        if "\n" in value:
            raise ConfigError(f"{key} holds a line break", fix=f"set {key} on one line")
    return "".join(f"{k}={v}\n" for k, v in values.items())


def checksum(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def image_entry(ref: str) -> dict[str, str]:
    """A kustomize ``images`` entry's new name and tag (or digest) from ``ref``."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return {"newName": name, "digest": digest}
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return {"newName": ref[:colon], "newTag": ref[colon + 1 :]}
    return {"newName": ref, "newTag": "latest"}


def migrate_job_name(opts: K8sOptions, config_checksum: str) -> str:
    """``mlflow-db-migrate-<tag>-<hash>``: a new image or config is a new Job."""
    tag = image_entry(opts.tracking_image).get("newTag") or "digest"
    slug = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")[:24].strip("-") or "image"
    digest = hashlib.sha256(f"{opts.tracking_image}\0{config_checksum}".encode()).hexdigest()
    return f"{MIGRATE_JOB}-{slug}-{digest[:8]}"
