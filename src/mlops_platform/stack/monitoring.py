"""Monitoring on the local stack (MLOPS_MONITORING=true): Prometheus with the kit's alert
rules, and what it scrapes besides MLflow's own /metrics and SeaweedFS's metrics port:

- ``metrics``: the kit's exporter (`mlops-platform metrics`): doctor checks, counts,
  sizes, backups, lockouts;
- ``postgres-exporter``: Debian's prometheus-postgres-exporter (connections, settings);
- ``nginx-exporter``: Debian's prometheus-nginx-exporter on nginx's loopback-only
  ``/-/nginx-status`` (stub_status);
- ``prometheus``: Debian's prometheus, on loopback (MLOPS_MONITORING_PORT).

Every one listens on 127.0.0.1 only; the exporters on ports picked at each start, which
Prometheus's configuration (rewritten at each `up`, reloaded when it changed) names.
"""

from __future__ import annotations

import os
import signal
import sys
from importlib import resources
from pathlib import Path

from mlops_platform.bootstrap import write_private
from mlops_platform.errors import MissingBinaryError
from mlops_platform.render import prometheus as render
from mlops_platform.settings import (
    PlatformSettings,
    as_environment,
    inherited_environment,
    which,
)
from mlops_platform.stack.base import (
    PortClaim,
    Progress,
    Service,
    StateFile,
    pick_free_port,
    spawn,
    wait_until,
)
from mlops_platform.stack.tracking import OVERRIDES, http_ok

PACKAGES = {
    "prometheus": "prometheus",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
}


def find_binary(name: str) -> str:
    found = which(name) or next(
        (f"{d}/{name}" for d in ("/usr/bin", "/usr/sbin") if os.access(f"{d}/{name}", os.X_OK)),
        None,
    )
    if found is None:
        raise MissingBinaryError(
            f"{name} is not installed (MLOPS_MONITORING=true needs it)",
            fix=f"apt-get install -y {PACKAGES[name]} (or `make system-deps`), "
            "or set MLOPS_MONITORING=false",
        )
    return found


def rule_files() -> list[tuple[str, str]]:
    """The alert rules shipped with the kit (monitoring/rules/*.yml): name and text."""
    folder = resources.files("mlops_platform") / "templates" / "rules"
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yml") and entry.name != "tests.yml"
    )


class MonitoringService(Service):
    """A process of the monitoring side: on when MLOPS_MONITORING is, under
    ``<state>/monitoring/<name>``, on a loopback port picked at each start."""

    binary_name = ""

    def __init__(self, settings: PlatformSettings, state: StateFile) -> None:
        super().__init__(settings, state)
        self.root = settings.state_dir / "monitoring" / self.name

    def enabled(self) -> bool:
        return self.settings.monitoring

    def preflight(self) -> None:
        if self.binary_name:
            find_binary(self.binary_name)

    def main_port(self) -> int | None:
        port = self.record.get("port")
        return int(port) if port else None

    def url(self) -> str | None:
        port = self.main_port()
        return f"http://127.0.0.1:{port}/metrics" if port else None

    def marker(self) -> str:
        return f"127.0.0.1:{self.main_port()}"

    def healthy(self) -> bool:
        url = self.url()
        return url is not None and http_ok(url)

    def _avoid(self) -> set[int]:
        s = self.settings
        return {s.db_port, s.s3_port, s.server_port, s.proxy_port, s.monitoring_port}

    def _spawn(self, argv: list[str], progress: Progress, port: int, **kw: object) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid = spawn(argv, log_path=self.log_path, cwd=self.root, **kw)  # type: ignore[arg-type]
        self.remember(pid=pid, port=port)
        wait_until(
            self.healthy, timeout=60, what=self.name, alive=self.running, log_path=self.log_path
        )


class MetricsExporter(MonitoringService):
    """`mlops-platform metrics`, with the settings the stack runs with."""

    name = "metrics"

    def __init__(self, settings: PlatformSettings, state: StateFile, env_file: Path | None):
        super().__init__(settings, state)
        self.env_file = env_file

    def marker(self) -> str:
        # `mlops-platform ... metrics --host H --port P` execs `python -m
        # mlops_platform.metrics --host H --port P ...`: both carry this
        return f"--host 127.0.0.1 --port {self.main_port()}"

    def start(self, progress: Progress) -> None:
        port = pick_free_port(self._avoid())
        argv = [sys.executable, "-m", "mlops_platform"]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        argv += ["metrics", "--host", "127.0.0.1", "--port", str(port)]
        env = inherited_environment()
        env.update(as_environment(self.settings, *OVERRIDES))
        progress(f"starting the kit's exporter on 127.0.0.1:{port}")
        self._spawn(argv, progress, port, env=env)


class PostgresExporter(MonitoringService):
    name = "postgres-exporter"
    binary_name = "prometheus-postgres-exporter"

    def start(self, progress: Progress) -> None:
        port = pick_free_port(self._avoid())
        env = inherited_environment(keep_settings=False)
        env["DATA_SOURCE_NAME"] = render.postgres_exporter_dsn(self.settings)  # not in argv
        progress(f"starting prometheus-postgres-exporter on 127.0.0.1:{port}")
        argv = render.postgres_exporter_argv(find_binary(self.binary_name), port)
        self._spawn(argv, progress, port, env=env)


class NginxExporter(MonitoringService):
    name = "nginx-exporter"
    binary_name = "prometheus-nginx-exporter"

    def enabled(self) -> bool:
        return self.settings.monitoring and self.settings.proxy_enabled

    def start(self, progress: Progress) -> None:
        port = pick_free_port(self._avoid())
        progress(f"starting prometheus-nginx-exporter on 127.0.0.1:{port}")
        argv = render.nginx_exporter_argv(find_binary(self.binary_name), port, self.settings)
        self._spawn(argv, progress, port, env=inherited_environment(keep_settings=False))


class Prometheus(MonitoringService):
    name = "prometheus"
    binary_name = "prometheus"

    def port_claims(self) -> list[PortClaim]:
        return [PortClaim(self.settings.monitoring_port, "MLOPS_MONITORING_PORT")]

    def main_port(self) -> int | None:
        return self.settings.monitoring_port

    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.settings.monitoring_port}"

    def marker(self) -> str:
        return str(self.root)

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.settings.monitoring_port}/-/ready")

    def ports(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name in ("metrics", "postgres-exporter", "nginx-exporter"):
            port = self.state.services.get(name, {}).get("port")
            out[name] = int(port) if port else None
        weed = self.state.services.get("seaweedfs", {}).get("metrics_port")
        out["seaweedfs"] = int(weed) if weed else None
        return out

    def write_config(self) -> bool:
        """Rules and configuration from the current state; True when something changed."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        rules_dir = self.root / "rules"
        rules_dir.mkdir(mode=0o700, exist_ok=True)
        changed = False
        names = []
        for name, text in rule_files():
            changed |= _write_if_changed(rules_dir / name, text)
            names.append(str(rules_dir / name))
        password_file = None
        if self.settings.proxy_enabled:
            password_file = self.root / "tracking-password"
            changed |= _write_if_changed(
                password_file, self.settings.proxy_password.get_secret_value()
            )
        targets = render.local_targets(self.settings, self.ports(), password_file=password_file)
        config = render.prometheus_yaml(render.prometheus_config(targets, names))
        changed |= _write_if_changed(self.root / "prometheus.yml", config)
        return changed

    def start(self, progress: Progress) -> None:
        binary = find_binary(self.binary_name)
        self.write_config()
        (self.root / "data").mkdir(mode=0o700, exist_ok=True)
        port = self.settings.monitoring_port
        progress(f"starting Prometheus on 127.0.0.1:{port} with the kit's alert rules")
        argv = render.prometheus_argv(
            binary, self.root / "prometheus.yml", self.root / "data", port
        )
        self._spawn(argv, progress, port, env=inherited_environment(keep_settings=False))

    def reload(self, progress: Progress) -> bool:
        """Rewrite the configuration; SIGHUP Prometheus when it changed (a restarted
        service listens on a new port)."""
        pid = self.pid()
        if not self.running() or pid is None or not self.write_config():
            return False
        progress("Prometheus: services moved; reloading its configuration")
        os.kill(pid, signal.SIGHUP)
        return True


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_private(path, text)
    return True


def monitoring_services(
    settings: PlatformSettings, state: StateFile, env_file: Path | None
) -> list[Service]:
    """In start order: the exporters, then Prometheus, which names their ports."""
    return [
        MetricsExporter(settings, state, env_file),
        PostgresExporter(settings, state),
        NginxExporter(settings, state),
        Prometheus(settings, state),
    ]


def reload_after_start(services: list[Service], started: list[Service], progress: Progress) -> None:
    """Called by `up` once it started something: a Prometheus that was already running
    learns where the restarted services listen now."""
    for service in services:
        if isinstance(service, Prometheus) and service not in started:
            service.reload(progress)
