"""The ``mlflow server`` command line and environment."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from mlops_platform.fast_store import SCHEME as FAST_STORE_SCHEME
from mlops_platform.settings import PlatformSettings, as_environment

# The kit's app (pyproject's mlflow.app entry point): MLflow's basic-auth app with the
# proxy's identity (mlops_platform.auth_app).
AUTH_APP_NAME = "mlops-auth"


def public_origin(url: str) -> str:
    """The origin (scheme://host[:port]) of a URL: what browsers send, never a path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def server_argv(settings: PlatformSettings, *, python: str = sys.executable) -> list[str]:
    """The argv that starts the tracking server. It never carries a secret."""
    database = settings.database_url(with_password=False)
    backend = database
    if settings.db_fast_metrics and not settings.job_execution:
        # mlops_platform.fast_store's scheme; the model registry keeps MLflow's store.
        # MLflow's job runner takes only a plain database URI: with it, MLflow's store.
        backend = FAST_STORE_SCHEME + "://" + database.split("://", 1)[1]
    # The kit's wrapper of MLflow's CLI: streamed artifact downloads, and TCP_NODELAY.
    argv = [python, "-m", "mlops_platform.mlflow_server"]
    if not settings.server_tcp_nodelay:
        argv.append("--no-tcp-nodelay")
    argv += [
        "server",
        "--backend-store-uri",
        backend,
        "--host",
        settings.server_host,
        "--port",
        str(settings.server_port),
        "--workers",
        str(settings.workers),
        "--allowed-hosts",
        ",".join(settings.allowed_host_list()),
        "--cors-allowed-origins",
        public_origin(settings.resolved_public_url),
    ]
    if backend != database:
        argv += ["--registry-store-uri", database]
    if settings.artifact_mode == "proxied":
        argv += [
            "--serve-artifacts",
            "--artifacts-destination",
            settings.artifacts_uri,
        ]
    else:
        argv += ["--no-serve-artifacts", "--default-artifact-root", settings.artifacts_uri]
    if settings.prometheus or settings.monitoring:  # monitoring scrapes /metrics
        argv += ["--expose-prometheus", str(settings.state_dir / "prometheus")]
    if settings.identity_enabled:
        argv += ["--app-name", AUTH_APP_NAME]
    return argv


def auth_ini_path(settings: PlatformSettings) -> Path:
    return settings.state_dir / "auth" / "basic_auth.ini"


def auth_env(settings: PlatformSettings, *, admin_password: str) -> dict[str, str]:
    """What the kit's auth app reads in the workers (empty when permissions are off).

    ``admin_password`` only matters if the admin user were missing from the store, which
    `serve` has already made sure it is not; it is random and thrown away.
    """
    if not settings.identity_enabled:
        return {}
    env = as_environment(
        settings,
        "proxy_secret",
        "proxy_user",
        "auth_default_role",
        "auth_protected_aliases",
        "auth_db_name",
        "auth_cache_seconds",
    )
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_ini_path(settings))
    env["MLFLOW_AUTH_ADMIN_USERNAME"] = settings.proxy_user
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin_password
    return env


def server_env(settings: PlatformSettings) -> dict[str, str]:
    """Variables the server needs on top of the inherited environment: the secrets go here."""
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if settings.job_execution else "false",
        "AWS_DEFAULT_REGION": settings.s3_region,
        "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "path" if settings.s3_path_style else "auto",
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(settings.db_pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(settings.db_pool_max_overflow),
        # read by the kit's store (mlops_platform.fast_store.store.PREPARED_WRITES_ENV)
        **as_environment(settings, "db_prepared_writes"),
    }
    if settings.db_pool_recycle_seconds:
        env["MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE"] = str(settings.db_pool_recycle_seconds)
    password = settings.db_parts()["password"]
    if password:
        env["PGPASSWORD"] = password
    if settings.s3_endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint
    key_id = settings.s3_access_key_id.get_secret_value()
    if key_id:
        env["AWS_ACCESS_KEY_ID"] = key_id
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key.get_secret_value()
    secret = settings.flask_secret_key.get_secret_value()
    if secret:
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secret
    kek = settings.kek_passphrase.get_secret_value()
    if kek:  # else MLflow encrypts stored secrets with its public default passphrase
        env["MLFLOW_CRYPTO_KEK_PASSPHRASE"] = kek
        env["MLFLOW_CRYPTO_KEK_VERSION"] = str(settings.kek_version)
    # A model version's source must be the platform's own artifacts (re.search): run and
    # model URIs, the proxied artifact store, or the artifact root in the bucket. Another
    # bucket, a file: path or a URL is refused, so the server never fetches it for anyone.
    root = re.escape(f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}/")
    env["MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"] = (
        r"^(?!.*(?:^|/)\.\.(?:/|$))(?:models:/|runs:/|mlflow-artifacts:/|" + root + ")"
    )
    return env


def client_env(
    settings: PlatformSettings, *, public_url: str | None = None, user: str | None = None
) -> dict[str, str]:
    """What an ``mlflow`` client needs to talk to this platform.

    ``user``: a named user's variables; only the admin's password is known to the kit.
    """
    env = {
        "MLFLOW_TRACKING_URI": public_url or settings.resolved_public_url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.client_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(settings.client_backoff_factor),
    }
    if settings.proxy_enabled:
        env["MLFLOW_TRACKING_USERNAME"] = user or settings.proxy_user
        if user in (None, settings.proxy_user):
            env["MLFLOW_TRACKING_PASSWORD"] = settings.proxy_password.get_secret_value()
    if settings.artifact_mode == "direct":
        if settings.s3_endpoint:
            env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id.get_secret_value()
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key.get_secret_value()
        env["AWS_DEFAULT_REGION"] = settings.s3_region
        if settings.s3_path_style:
            env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] = "path"
    return env
