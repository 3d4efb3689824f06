"""nginx in front of the tracking server, with the very template compose mounts."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil

from mlops_platform.bootstrap import ensure_users_file, write_private
from mlops_platform.errors import MissingBinaryError, ServiceError
from mlops_platform.hosts import url_host
from mlops_platform.render import nginx as render_nginx
from mlops_platform.render import prometheus as render_prometheus
from mlops_platform.settings import which
from mlops_platform.stack.base import (
    PortClaim,
    Progress,
    Service,
    private_dir,
    running_as_root,
    spawn,
    wait_until,
)
from mlops_platform.stack.tracking import http_ok, replica_ports

WORKER_USER = "nobody"


def nginx_available(binary: str) -> bool:
    return which(binary) is not None


class Proxy(Service):
    name = "nginx"

    def enabled(self) -> bool:
        return self.settings.proxy_enabled

    def binary(self) -> str:
        found = which(self.settings.nginx_bin)
        if not found:
            raise MissingBinaryError(
                f"nginx ({self.settings.nginx_bin}) is not installed",
                fix="apt-get install -y nginx, or set MLOPS_PROXY_ENABLED=false",
            )
        return found

    def preflight(self) -> None:
        self.binary()

    def port_claims(self) -> list[PortClaim]:
        claims = [PortClaim(self.settings.proxy_port, "MLOPS_PROXY_PORT", self.settings.proxy_host)]
        if self.settings.tls_enabled and self.settings.proxy_plain_port is not None:
            claims.append(
                PortClaim(
                    self.settings.proxy_plain_port,
                    "MLOPS_PROXY_PLAIN_PORT",
                    self.settings.proxy_host,
                )
            )
        return claims

    def main_port(self) -> int | None:
        return self.settings.proxy_port

    def marker(self) -> str:
        return str(self.root)

    def url(self) -> str | None:
        return self.settings.resolved_public_url

    def worker_user(self) -> str | None:
        if not running_as_root():
            return None
        entry = pwd.getpwnam(WORKER_USER)
        group = grp.getgrgid(entry.pw_gid).gr_name
        return f"{WORKER_USER} {group}"

    def _private(self, folder: Path) -> None:
        """``folder`` entered by nginx's workers only (request bodies, the lockout cache,
        the failed-login counter's socket): owned by the worker user, mode 0700."""
        folder.chmod(0o700)
        if self.worker_user():
            entry = pwd.getpwnam(WORKER_USER)
            os.chown(folder, entry.pw_uid, entry.pw_gid)

    def socket_dir(self) -> Path:
        """Where the failed-login counter's socket lives: the private ``tmp`` folder, or
        where that path is too long for a unix socket, a private folder with a random name
        under the system's temporary folder (kept across restarts, removed by `down`)."""
        local = self.root / "tmp"
        if render_nginx.socket_fits(local):
            return local
        remembered = self.record.get("socket_dir")
        if remembered and _ours_and_private(Path(remembered)):
            return Path(remembered)
        made = Path(tempfile.mkdtemp(prefix="mlops-nginx-"))
        if not render_nginx.socket_fits(made):
            raise ServiceError(
                f"no folder short enough for nginx's unix socket ({made})",
                fix="set TMPDIR to a short folder, or use a shorter MLOPS_STATE_DIR",
            )
        self.remember(socket_dir=str(made))
        return made

    def upstream(self, leave_out: set[int] | frozenset[int] = frozenset()) -> str:
        """The tracking server's replicas nginx sends requests to."""
        ports = [p for p in replica_ports(self.settings) if p not in leave_out]
        return render_nginx.upstream_servers([f"127.0.0.1:{p}" for p in ports])

    def write_config(self, leave_out: set[int] | frozenset[int] = frozenset()) -> None:
        private_dir(self.root, services_pass=True)  # workers pass through to tmp
        for sub in ("conf.d", "snippets", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        run_as = self.worker_user()
        (self.root / "nginx.conf").write_text(render_nginx.main_conf(self.root, run_as=run_as))
        sockets = self.socket_dir()
        site = render_nginx.site_conf(
            self.settings,
            upstream=self.upstream(leave_out),
            snippets_dir=str(self.root / "snippets"),
            access_log=str(self.root / "logs" / "access.log"),
            auth_fail_socket_path=render_nginx.auth_fail_socket(sockets),
            lockout_cache=str(self.root / "tmp" / "lockout"),
        )

        # It holds the proxy secret: readable by the master process (root or us) only.
        write_private(self.root / "conf.d" / "mlflow.conf", site)
        for name, text in (
            ("tls.conf", render_nginx.tls_snippet(self.settings)),
            ("real-ip.conf", render_nginx.real_ip_snippet(self.settings)),
            ("nginx-status.conf", render_prometheus.nginx_status_snippet(self.settings)),
        ):
            path = self.root / "snippets" / name
            if text:
                path.write_text(text)
            else:
                path.unlink(missing_ok=True)
        users = ensure_users_file(self.settings)
        if run_as:  # workers run as nobody: they must read the password file, write temp
            entry = pwd.getpwnam(WORKER_USER)
            if users.parent == self.settings.state_dir:
                os.chown(users, 0, entry.pw_gid)
                os.chmod(users, 0o640)
        for folder in {self.root / "tmp", sockets}:
            self._private(folder)

    def test_config(self, binary: str) -> None:
        conf = str(self.root / "nginx.conf")
        error_log = str(self.root / "logs" / "error.log")
        test = subprocess.run(
            [binary, "-t", "-q", "-c", conf, "-p", str(self.root), "-e", error_log],
            capture_output=True,
            text=True,
            check=False,
        )
        if test.returncode != 0:
            raise ServiceError(
                f"nginx rejected its configuration: {test.stderr.strip()}",
                fix=f"check the proxy settings; the file is {conf}",
            )

    def reload(self, progress: Progress, *, leave_out: set[int], timeout: float = 120) -> None:
        """Rewrite the configuration (the replicas in ``leave_out`` out of the upstream),
        reload nginx, and return once its old workers are gone: from then on no request
        and no kept-alive connection reaches a replica left out."""
        binary = self.binary()
        pid = self.pid()
        if pid is None or not self.running():
            raise ServiceError("nginx is not running", fix="run `mlops-platform up`")
        self.write_config(leave_out)
        self.test_config(binary)
        old = {p.pid for p in psutil.Process(pid).children()}
        os.kill(pid, signal.SIGHUP)

        def old_workers_gone() -> bool:
            now = {p.pid for p in psutil.Process(pid).children()}
            return not (old & now) and bool(now)

        wait_until(old_workers_gone, timeout=timeout, what="nginx's reload", interval=0.1)

    def start(self, progress: Progress) -> None:
        binary = self.binary()
        self.write_config()
        # A socket left by an nginx that was killed would make the new one fail to bind;
        # never removed under a running nginx, whose workers connect to it by path.
        Path(render_nginx.auth_fail_socket(self.socket_dir())).unlink(missing_ok=True)
        conf = str(self.root / "nginx.conf")
        error_log = str(self.root / "logs" / "error.log")
        self.test_config(binary)
        progress(f"starting nginx on {self.settings.proxy_host}:{self.settings.proxy_port}")
        pid = spawn(
            [binary, "-c", conf, "-p", str(self.root), "-e", error_log],
            log_path=self.log_path,
            cwd=self.root,
        )
        self.remember(pid=pid, port=self.settings.proxy_port)
        wait_until(
            self.healthy,
            timeout=30,
            what="nginx",
            alive=self.running,
            log_path=self.root / "logs" / "error.log",
        )

    def log_paths(self) -> list[Path]:
        """nginx writes its own error and access logs; its output log is nearly empty."""
        logs = self.root / "logs"
        return [logs / "error.log", logs / "access.log", self.log_path]

    def refresh(self, progress: Progress) -> bool:
        """Re-render the configuration and the password file, then reload nginx (SIGHUP:
        new workers with the new files, no dropped connection). A new proxy password or
        a changed setting takes effect without `down`."""
        pid = self.pid()
        if pid is None:
            return False
        binary = self.binary()
        self.write_config()
        conf = str(self.root / "nginx.conf")
        test = subprocess.run(
            [
                binary,
                "-t",
                "-q",
                "-c",
                conf,
                "-p",
                str(self.root),
                "-e",
                str(self.root / "logs" / "error.log"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if test.returncode != 0:
            raise ServiceError(
                f"nginx rejected its new configuration (the running one is kept): "
                f"{test.stderr.strip()}",
                fix=f"check the proxy settings; the file is {conf}",
            )
        os.kill(pid, signal.SIGHUP)
        progress("nginx: configuration and password file re-rendered, reloaded")
        return True

    def stop(self, progress: Progress) -> bool:
        socket_dir = self.record.get("socket_dir")
        stopped = super().stop(progress)
        if socket_dir and _ours_and_private(Path(socket_dir)):
            shutil.rmtree(socket_dir, ignore_errors=True)
        return stopped

    def healthy(self) -> bool:
        scheme = "https" if self.settings.tls_enabled else "http"
        url = f"{scheme}://{url_host(self.settings.proxy_host)}:{self.settings.proxy_port}/-/proxy-health"
        if scheme == "https":
            return self.running() and _https_ok(url)
        return http_ok(url)


def _ours_and_private(folder: Path) -> bool:
    """A real folder (not a link) of ours or nginx's worker user, closed to others."""
    try:
        info = folder.lstat()
    except OSError:
        return False
    owners = {os.getuid()}
    if running_as_root():
        owners.add(pwd.getpwnam(WORKER_USER).pw_uid)
    return stat.S_ISDIR(info.st_mode) and info.st_uid in owners and info.st_mode & 0o077 == 0


def _https_ok(url: str) -> bool:
    """Liveness over TLS; the certificate is for the public name, not for 127.0.0.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http_ok(url, context=context)
