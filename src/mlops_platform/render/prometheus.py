"""Prometheus's configuration for the local stack (MLOPS_MONITORING=true) and for
compose's `monitoring` profile: pure functions, one list of jobs for both.

Every target carries a ``service`` label (the name `mlops-platform status` and `logs`
use); the alert rules (monitoring/rules/*.yml, shipped in the package) name it in their
messages. Compose's files are generated from here and checked by the tests:

    python -m mlops_platform.render.prometheus compose > monitoring/prometheus.yml
    python -m mlops_platform.render.prometheus nginx-status > monitoring/nginx-status.conf
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_platform.hosts import url_host
from mlops_platform.settings import PlatformSettings

SCRAPE_INTERVAL = "15s"
EVALUATION_INTERVAL = "15s"
RETENTION = "15d"
NGINX_STATUS_PATH = "/-/nginx-status"  # nginx_status_snippet()


# The exporters' jobs, the same on the local stack and in compose: job name, the
# process (`mlops-platform status`) or compose service that serves it, its ``service``
# label.
EXPORTER_JOBS = (
    ("mlops-platform", "metrics", "metrics"),
    ("postgres", "postgres-exporter", "postgres"),
    ("nginx", "nginx-exporter", "nginx"),
    ("seaweedfs", "seaweedfs", "seaweedfs"),
)

# Compose: the port each service serves its metrics on, inside the `monitoring` network.
COMPOSE_PORTS = {
    "metrics": 9464,  # `mlops-platform metrics --port`
    "postgres-exporter": 9187,  # the image's default
    "nginx-exporter": 9113,  # the image's default
    "seaweedfs": 9327,  # scripts/seaweedfs-start: weed server -metricsPort
}
# Compose: nginx's counters in a server of their own on this port, which
# docker-compose.yaml never publishes (nginx publishes 8080, and 8443 with TLS).
COMPOSE_NGINX_STATUS_PORT = 8081
COMPOSE_NGINX_STATUS_PATH = "/stub_status"
COMPOSE_RULES_DIR = "/etc/prometheus/rules"
COMPOSE_MONITORING_USER = "svc-monitoring"
COMPOSE_MONITORING_PASSWORD_FILE = "/run/secrets/monitoring_password"


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
    # found through DNS (a compose service that only some profiles run: no container,
    # no target, instead of a target that is always down)
    discovered: bool = False


def loopback(host: str) -> str:
    """The address to reach a service bound to ``host`` from this machine."""
    return url_host("127.0.0.1" if host == "localhost" else host)


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
    for job, key, service in EXPORTER_JOBS:
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


def compose_targets() -> list[Target]:
    """Compose's targets: the local stack's jobs, by service name in the `monitoring`
    network. SeaweedFS is found through Docker's DNS: it runs only under the `seaweedfs`
    profile (MinIO or an external S3 have no such target); when it is down, the doctor's
    round trip (MlopsArtifactStoreFailing) says so."""
    out = [Target("prometheus", "127.0.0.1:9090", "prometheus")]
    for job, key, service in EXPORTER_JOBS:
        out.append(
            Target(job, f"{key}:{COMPOSE_PORTS[key]}", service, discovered=key == "seaweedfs")
        )
    # MLflow's /metrics through nginx, like any client, as the monitoring account: only
    # nginx shares a network with the tracking server.
    out.append(
        Target(
            "mlflow-tracking",
            "nginx:8080",
            "tracking",
            username=COMPOSE_MONITORING_USER,
            password_file=COMPOSE_MONITORING_PASSWORD_FILE,
        )
    )
    return out


def compose_prometheus_yaml(rule_names: list[str]) -> str:
    """monitoring/prometheus.yml: compose's Prometheus, the local stack's jobs and rules."""
    rules = [f"{COMPOSE_RULES_DIR}/{name}" for name in sorted(rule_names)]
    config = prometheus_config(compose_targets(), rules)
    header = (
        "# Prometheus of the compose `monitoring` profile: the same jobs, labels and alert\n"
        "# rules as the local stack (MLOPS_MONITORING=true), by compose service name in the\n"
        "# internal `monitoring` network (docs/monitoring.md). MLflow's /metrics through nginx\n"
        "# as the `svc-monitoring` account (MONITORING_PASSWORD, the compose secret\n"
        "# monitoring_password). Generated: `python -m mlops_platform.render.prometheus\n"
        "# compose > monitoring/prometheus.yml`; tests/unit/test_compose_monitoring.py checks it.\n"
    )
    return header + dump_yaml(config)


def compose_nginx_status_conf() -> str:
    """monitoring/nginx-status.conf: nginx's ``stub_status`` for nginx-prometheus-exporter
    in a server of its own on a port compose never publishes, so nothing reaching the
    published port (the authenticated proxy) can get it; no login, no log, no MLflow."""
    return (
        "# nginx's counters for nginx-prometheus-exporter (compose `monitoring` profile):\n"
        f"# a server of its own on {COMPOSE_NGINX_STATUS_PORT}, which docker-compose.yaml never\n"
        "# publishes; only containers on nginx's networks reach it. Generated:\n"
        "# `python -m mlops_platform.render.prometheus nginx-status`.\n"
        "server {\n"
        f"    listen {COMPOSE_NGINX_STATUS_PORT};\n"
        "    server_name _;\n"
        "    access_log off;\n"
        f"    location = {COMPOSE_NGINX_STATUS_PATH} {{\n"
        "        stub_status;\n"
        "    }\n"
        "    location / {\n"
        "        return 404;\n"
        "    }\n"
        "}\n"
    )


def compose_nginx_scrape_uri() -> str:
    return f"http://nginx:{COMPOSE_NGINX_STATUS_PORT}{COMPOSE_NGINX_STATUS_PATH}"


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
    if target.discovered:
        host, port = target.address.rsplit(":", 1)
        job["dns_sd_configs"] = [{"names": [host], "type": "A", "port": int(port)}]
        job["relabel_configs"] = [{"target_label": "service", "replacement": target.service}]
    else:
        job["static_configs"] = [
            {"targets": [target.address], "labels": {"service": target.service}}
        ]
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


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (and people) expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def dump_yaml(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_IndentedDumper, sort_keys=False)


def prometheus_yaml(config: dict[str, Any]) -> str:
    header = "# Written by `mlops-platform up` (MLOPS_MONITORING=true) at each start.\n"
    return header + dump_yaml(config)


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


if __name__ == "__main__":
    import sys
    from importlib import resources

    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "compose":
        folder = resources.files("mlops_platform") / "templates" / "rules"
        names = [e.name for e in folder.iterdir() if e.name.endswith(".yml")]
        print(compose_prometheus_yaml([n for n in names if n != "tests.yml"]), end="")
    elif what == "nginx-status":
        print(compose_nginx_status_conf(), end="")
    else:
        sys.exit("usage: python -m mlops_platform.render.prometheus compose|nginx-status")
