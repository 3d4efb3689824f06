"""Prometheus's configuration for the local stack (MLOPS_MONITORING=true): pure functions.

Every target carries a ``service`` label (the name `mlops-platform status` and `logs`
use); the alert rules (monitoring/rules/*.yml, shipped in the package) name it in their
messages. Compose's monitoring/prometheus.yml scrapes the same jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_platform.settings import PlatformSettings

SCRAPE_INTERVAL = "15s"
EVALUATION_INTERVAL = "15s"
RETENTION = "15d"
NGINX_STATUS_PATH = "/-/nginx-status"  # nginx_status_snippet()


@dataclass(frozen=True)
class Target:
    job: str
    address: str  # host:port
    service: str
    scheme: str = "http"
    metrics_path: str = "/metrics"
    username: str | None = None  # basic auth, with the password in password_file
    password_file: str | None = None
    insecure_tls: bool = False


def loopback(host: str) -> str:
    """The address to reach a service bound to ``host`` from this machine."""
    if host in ("0.0.0.0", "::", "", "localhost"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def proxy_base(settings: PlatformSettings) -> tuple[str, str]:
    """Scheme and host:port of the local proxy, as seen from loopback."""
    scheme = "https" if settings.tls_enabled else "http"
    return scheme, f"{loopback(settings.proxy_host)}:{settings.proxy_port}"


def nginx_status_snippet(settings: PlatformSettings) -> str:
    """The local stack's nginx snippet (included in the proxy's server block) that serves
    ``stub_status`` to prometheus-nginx-exporter: only to a TCP peer on loopback (the
    address before any real-ip rewrite), 404 to anyone else; no login, no log, nothing
    reaches MLflow. Empty without MLOPS_MONITORING."""
    if not settings.monitoring:
        return ""
    return (
        "# Written by `mlops-platform up` (MLOPS_MONITORING=true): nginx's counters for\n"
        "# prometheus-nginx-exporter, for loopback peers only.\n"
        f"location = {NGINX_STATUS_PATH} {{\n"
        "    auth_request off;\n"
        "    auth_basic off;\n"
        "    access_log off;\n"
        '    if ($realip_remote_addr !~ "^(127\\.0\\.0\\.1|::1)$") {\n'
        "        return 404;\n"
        "    }\n"
        "    stub_status;\n"
        "}\n"
    )


def nginx_status_uri(settings: PlatformSettings) -> str:
    scheme, address = proxy_base(settings)
    return f"{scheme}://{address}{NGINX_STATUS_PATH}"


def local_targets(
    settings: PlatformSettings,
    ports: dict[str, int | None],
    *,
    password_file: Path | None,
) -> list[Target]:
    """The local stack's targets. ``ports``: the exporters' (``metrics``,
    ``postgres-exporter``, ``nginx-exporter``) and SeaweedFS's metrics port (``seaweedfs``);
    a missing or None port leaves that target out."""
    out = [Target("prometheus", f"127.0.0.1:{settings.monitoring_port}", "prometheus")]
    for job, key, service in (
        ("mlops-platform", "metrics", "metrics"),
        ("postgres", "postgres-exporter", "postgres"),
        ("nginx", "nginx-exporter", "nginx"),
        ("seaweedfs", "seaweedfs", "seaweedfs"),
    ):
        port = ports.get(key)
        if port:
            out.append(Target(job, f"127.0.0.1:{port}", service))
    # MLflow's /metrics: through the proxy with a login, like any client (the server
    # answers only requests that carry the proxy's secret); straight to the server when
    # there is no proxy (it then listens on loopback only).
    if settings.proxy_enabled:
        scheme, address = proxy_base(settings)
        out.append(
            Target(
                "mlflow-tracking",
                address,
                "tracking",
                scheme=scheme,
                username=settings.proxy_user,
                password_file=str(password_file) if password_file else None,
                insecure_tls=scheme == "https",
            )
        )
    else:
        out.append(Target("mlflow-tracking", f"127.0.0.1:{settings.server_port}", "tracking"))
    return out


def scrape_config(target: Target) -> dict[str, Any]:
    job: dict[str, Any] = {"job_name": target.job}
    if target.metrics_path != "/metrics":
        job["metrics_path"] = target.metrics_path
    if target.scheme != "http":
        job["scheme"] = target.scheme
    if target.insecure_tls:
        # the certificate names the public host, not the loopback address scraped here
        job["tls_config"] = {"insecure_skip_verify": True}
    if target.username:
        job["basic_auth"] = {"username": target.username, "password_file": target.password_file}
    job["static_configs"] = [{"targets": [target.address], "labels": {"service": target.service}}]
    return job


def prometheus_config(
    targets: list[Target],
    rule_files: list[str],
    *,
    scrape_interval: str = SCRAPE_INTERVAL,
    evaluation_interval: str = EVALUATION_INTERVAL,
) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "external_labels": {"platform": "mlops-platform"},
        },
        "rule_files": rule_files,
        "scrape_configs": [scrape_config(t) for t in targets],
    }


def prometheus_yaml(config: dict[str, Any]) -> str:
    header = "# Written by `mlops-platform up` (MLOPS_MONITORING=true) at each start.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def prometheus_argv(
    binary: str, config: Path, data: Path, port: int, *, retention: str = RETENTION
) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]


def postgres_exporter_dsn(settings: PlatformSettings) -> str:
    """DATA_SOURCE_NAME of prometheus-postgres-exporter (kept out of its command line)."""
    from urllib.parse import quote

    p = settings.db_parts()
    user, password = quote(str(p["user"]), safe=""), quote(str(p["password"]), safe="")
    if settings.external_db:  # lib/pq knows no `prefer`: TLS to another host, none on loopback
        host, mode = str(p["host"]), "require"
    else:
        host, mode = loopback(str(p["host"])), "disable"
    return f"postgresql://{user}:{password}@{host}:{p['port']}/{p['name']}?sslmode={mode}"


def postgres_exporter_argv(binary: str, port: int) -> list[str]:
    return [binary, f"--web.listen-address=127.0.0.1:{port}"]


def nginx_exporter_argv(binary: str, port: int, settings: PlatformSettings) -> list[str]:
    argv = [
        binary,
        f"-nginx.scrape-uri={nginx_status_uri(settings)}",
        f"-web.listen-address=127.0.0.1:{port}",
    ]
    if settings.tls_enabled:
        argv.append("-nginx.ssl-verify=false")  # the certificate names the public host
    return argv
