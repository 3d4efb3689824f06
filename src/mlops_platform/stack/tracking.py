"""The tracking server, started through ``mlops-platform serve`` as in every deployment.

``MLOPS_SERVER_REPLICAS`` of them: replica 1 is ``tracking`` on ``MLOPS_SERVER_PORT``,
replica N is ``tracking-N`` on the N-1th port after it. Each has its own temporary folder
(MLflow's start-up lock is a file in the temporary folder) and its own log.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.parse

from mlops_platform.render.auth import identity_headers
from mlops_platform.settings import PlatformSettings, as_environment, inherited_environment
from mlops_platform.stack.base import PortClaim, Progress, Service, private_dir, spawn, wait_until

OVERRIDES = ("state_dir", "proxy_enabled", "server_host", "public_url", "server_port")


def replica_name(index: int) -> str:
    """``tracking`` for the first replica (index 0), ``tracking-2`` for the second, ..."""
    return "tracking" if index == 0 else f"tracking-{index + 1}"


def replica_ports(settings: PlatformSettings) -> list[int]:
    return [settings.server_port + i for i in range(settings.server_replicas)]


def http_ok(
    url: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 3.0,
    context: ssl.SSLContext | None = None,
) -> bool:
    """A 2xx answer to GET ``url``. False for anything else, a socket connected to itself
    included: a probe of a loopback port in the ephemeral range that nothing listens on yet
    can get that very port as its own source port (TCP's simultaneous open), read its own
    request back as the answer, and hold the port the service is about to bind."""
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.connect()
            sock = conn.sock
            if sock is not None and sock.getsockname() == sock.getpeername():
                return False
            path = parts.path or "/"
            conn.request(
                "GET",
                f"{path}?{parts.query}" if parts.query else path,
                headers={**(headers or {}), **({"Host": host} if host else {})},
            )
            return 200 <= conn.getresponse().status < 300
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return False


class Tracking(Service):
    name = "tracking"

    def __init__(self, settings: PlatformSettings, state, env_file, index: int = 0) -> None:  # type: ignore[no-untyped-def]
        self.name = replica_name(index)
        self.index = index
        if index:
            settings = settings.model_copy(update={"server_port": settings.server_port + index})
        super().__init__(settings, state)
        self.env_file = env_file

    def port_claims(self) -> list[PortClaim]:
        return [
            PortClaim(self.settings.server_port, "MLOPS_SERVER_PORT", self.settings.server_host)
        ]

    def main_port(self) -> int | None:
        return self.settings.server_port

    def marker(self) -> tuple[str, ...]:
        # `mlops-platform serve` until it execs, `mlflow server` after.
        return ("mlops_platform", "mlflow server")

    def url(self) -> str | None:
        return f"http://{self.settings.server_host}:{self.settings.server_port}"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "mlops_platform"]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        return argv + ["serve"]

    def start(self, progress: Progress) -> None:
        env = inherited_environment()
        env.update(as_environment(self.settings, *OVERRIDES))
        tmp = private_dir(self.settings.state_dir / "tmp" / self.name)
        env["TMPDIR"] = str(tmp)
        progress(f"starting the tracking server ({self.name}) on {self.url()}")
        pid = spawn(self.argv(), log_path=self.log_path, env=env, cwd=self.settings.state_dir)
        self.remember(pid=pid, port=self.settings.server_port)
        wait_until(
            self.healthy,
            timeout=self.settings.db_wait_seconds + 90,
            what="the tracking server",
            alive=self.running,
            log_path=self.log_path,
            interval=0.5,
        )

    def healthy(self) -> bool:
        """``/health`` answers without the database; an experiments call proves it is reached."""
        base = f"http://127.0.0.1:{self.settings.server_port}"
        host = f"localhost:{self.settings.server_port}"
        return http_ok(f"{base}/health") and http_ok(
            f"{base}/api/2.0/mlflow/experiments/get?experiment_id=0",
            host=host,
            headers=identity_headers(self.settings),
        )
