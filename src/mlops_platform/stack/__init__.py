"""The local stack: PostgreSQL, SeaweedFS, the tracking server and nginx as processes.

Deliberately small: start in order, wait until each is healthy, stop cleanly. Not a
process supervisor. Everything lives under ``settings.state_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_platform import s3
from mlops_platform.errors import PlatformError, StateError
from mlops_platform.hosts import url_host
from mlops_platform.locks import hold_exclusive
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import (
    Progress,
    Service,
    ServiceStatus,
    StateFile,
    check_ports,
    private_dir,
    tree_rss_mb,
)
from mlops_platform.stack.monitoring import monitoring_services, reload_after_start
from mlops_platform.stack.postgres import Postgres
from mlops_platform.stack.proxy import Proxy, nginx_available
from mlops_platform.stack.seaweedfs import SeaweedFS
from mlops_platform.stack.tracking import Tracking, replica_name

__all__ = ["LocalStack", "RestartResult", "UpResult", "effective_settings"]


def effective_settings(settings: PlatformSettings) -> tuple[PlatformSettings, list[str]]:
    """The settings the stack really runs with, and warnings about what was changed.

    Without nginx there is no authentication, so the server is kept on loopback.
    """
    warnings: list[str] = []
    if settings.proxy_enabled and not nginx_available(settings.nginx_bin):
        warnings.append(
            "nginx is not installed: the tracking server runs WITHOUT authentication, "
            "bound to 127.0.0.1 only. Install nginx (apt-get install -y nginx) and run "
            "`mlops-platform down && mlops-platform up` to put the auth proxy in front."
        )
        settings = settings.model_copy(
            update={
                "proxy_enabled": False,
                "server_host": "127.0.0.1",
                "public_url": f"http://127.0.0.1:{settings.server_port}",
            }
        )
    elif not settings.proxy_enabled and not settings.public_url:
        settings = settings.model_copy(
            update={"public_url": f"http://{url_host(settings.server_host)}:{settings.server_port}"}
        )
    return settings, warnings


@dataclass
class UpResult:
    url: str
    user: str | None
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "user": self.user,
            "started": self.started,
            "already_running": self.already_running,
            "refreshed": self.refreshed,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class RestartResult:
    service: str
    restarted: list[str] = field(default_factory=list)
    drained: bool = False
    seconds: float = 0.0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "restarted": self.restarted,
            "drained": self.drained,
            "seconds": round(self.seconds, 2),
            "note": self.note,
        }


class LocalStack:
    def __init__(self, settings: PlatformSettings, *, env_file: Path | None = None) -> None:
        self.settings, self.warnings = effective_settings(settings)
        self.env_file = env_file.absolute() if env_file is not None and env_file.exists() else None
        self.state_dir = self.settings.state_dir

    def _services(self, state: StateFile) -> list[Service]:
        services: list[Service] = [
            Postgres(self.settings, state),
            SeaweedFS(self.settings, state),
            *self._replicas(state),
            Proxy(self.settings, state),
            *monitoring_services(self.settings, state, self.env_file),  # MLOPS_MONITORING
        ]
        return [s for s in services if s.enabled()]

    def _replicas(self, state: StateFile, *, recorded: bool = False) -> list[Tracking]:
        """The tracking server's replicas, in order (started one after the other, each
        healthy before the next); ``recorded`` adds those a larger count left running."""
        count = self.settings.server_replicas
        if recorded:
            while replica_name(count) in state.services:
                count += 1
        return [Tracking(self.settings, state, self.env_file, index=i) for i in range(count)]

    @contextmanager
    def _locked(self) -> Iterator[StateFile]:
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise StateError(f"{self.state_dir} is not a folder", fix="set MLOPS_STATE_DIR")
        private_dir(self.state_dir, services_pass=True)
        lock_path = self.state_dir / "lock"
        with open(lock_path, "w") as lock:
            hold_exclusive(
                lock,
                StateError(
                    f"another mlops-platform command is working on {self.state_dir}",
                    fix="wait for it to finish",
                ),
            )
            yield StateFile.load(self.state_dir)

    def up(self, progress: Progress) -> UpResult:
        start = time.monotonic()
        result = UpResult(
            url=self.settings.resolved_public_url,
            user=self.settings.proxy_user if self.settings.proxy_enabled else None,
            warnings=list(self.warnings),
        )
        with self._locked() as state:
            services = self._services(state)
            # Pre-flight. Nothing is started or written until every check passes.
            to_start: list[Service] = []
            running: list[Service] = []
            for service in services:
                if service.running():
                    result.already_running.append(service.name)
                    running.append(service)
                    continue
                if service.record:
                    service.clear_stale(progress)
                service.preflight()
                to_start.append(service)
            check_ports([c for s in to_start for c in s.port_claims()])
            if not to_start:
                # Nothing to start: apply what changed (the proxy's password file and
                # configuration) to what runs, so a new password works without `down`.
                for service in running:
                    if service.refresh(progress):
                        result.refreshed.append(service.name)
                result.seconds = time.monotonic() - start
                return result
            # Start impacting things, in order; undo this run's starts on failure.
            started: list[Service] = []
            try:
                if not any(isinstance(s, SeaweedFS) for s in services):
                    progress(f"using the external S3 endpoint {self.settings.s3_endpoint}")
                    s3.ensure_bucket(self.settings)
                for service in to_start:
                    service.start(progress)
                    started.append(service)
                    result.started.append(service.name)
                reload_after_start(services, started, progress)
            except (PlatformError, KeyboardInterrupt):
                for service in reversed(started):
                    try:
                        service.stop(progress)
                    except PlatformError:
                        pass
                raise
        result.seconds = time.monotonic() - start
        return result

    def down(self, progress: Progress) -> list[str]:
        stopped: list[str] = []
        with self._locked() as state:
            for service in reversed(self._all_services(state)):
                if service.stop(progress):
                    stopped.append(service.name)
        return stopped

    def _all_services(self, state: StateFile) -> list[Service]:
        """Every kind of service, enabled or not: `down` must stop what an older config started."""
        return [
            Postgres(self.settings, state),
            SeaweedFS(self.settings, state),
            *self._replicas(state, recorded=True),
            Proxy(self.settings, state),
            *monitoring_services(self.settings, state, self.env_file),
        ]

    def restart(self, name: str, progress: Progress) -> RestartResult:
        """Restart the tracking server's replicas one at a time.

        With a proxy and two or more replicas no client call is lost: nginx is reloaded
        with the replica left out of its upstream first, and the replica is stopped only
        once nginx's old workers (and their connections to it) are gone, so no request,
        idempotent or not, is sent to a server that is stopping; healthy again, it goes
        back in with the reload that takes the next one out (N+1 reloads for N replicas).
        With one replica clients wait out the restart (their retries cover it).
        """
        if name != "tracking":
            raise StateError(
                f"`restart` knows the tracking server only, not {name!r}",
                fix="use `mlops-platform restart tracking`; for the others `down` and `up`",
            )
        start = time.monotonic()
        result = RestartResult(service=name)
        with self._locked() as state:
            replicas = self._replicas(state)
            proxy = Proxy(self.settings, state)
            routed = proxy.enabled() and proxy.running()
            result.drained = routed and len(replicas) > 1
            if not result.drained:
                result.note = (
                    "one replica: clients waited for the restart; set MLOPS_SERVER_REPLICAS=2 "
                    "for restarts that lose no call"
                    if len(replicas) == 1
                    else "no proxy in front: clients may have seen refused connections"
                )
            for replica in replicas:
                if result.drained:
                    # one reload both puts the replica restarted last back and takes this
                    # one out: each reload closes the clients' idle kept-alive connections
                    progress(f"taking {replica.name} out of nginx's upstream")
                    proxy.reload(progress, leave_out={replica.settings.server_port})
                replica.stop(progress)
                replica.start(progress)
                result.restarted.append(replica.name)
            if result.drained:
                proxy.reload(progress, leave_out=set())
        result.seconds = time.monotonic() - start
        return result

    def status(self) -> list[ServiceStatus]:
        state = StateFile.load(self.state_dir)
        return [s.status() for s in self._services(state)]

    def total_rss_mb(self) -> float:
        state = StateFile.load(self.state_dir)
        return round(
            sum(tree_rss_mb(s.pid()) or 0.0 for s in self._services(state) if s.running()), 1
        )

    def log_path(self, name: str) -> Path:
        return self.log_paths(name)[0]

    def log_paths(self, name: str) -> list[Path]:
        state = StateFile.load(self.state_dir)
        for service in self._all_services(state):
            if service.name == name:
                return service.log_paths()
        names = ", ".join(s.name for s in self._all_services(state))
        raise StateError(f"no service named {name!r}", fix=f"choose one of: {names}")

    def service_names(self) -> list[str]:
        return [s.name for s in self._all_services(StateFile(self.state_dir / "state.json"))]
