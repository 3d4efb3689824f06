"""``PlatformSettings``: the fields, their validation and the values derived from them."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from mlops_platform.settings import checks
from mlops_platform.settings.fields import S3Purpose, SettingsFields
from mlops_platform.settings.sources import (
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    SECRET_FIELDS,
    SecretFilesSource,
)

_NGINX_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PlatformSettings(SettingsFields):
    """Every setting of the platform. Environment names are ``MLOPS_`` + the field in capitals."""

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
        return checks.problems(self)

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
