"""nginx in front of the tracking server, with the very template compose mounts."""

from __future__ import annotations

import grp
import os
import pwd
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from mlops_platform.bootstrap import ensure_users_file, write_private
from mlops_platform.errors import MissingBinaryError, ServiceError
from mlops_platform.render import nginx as render_nginx
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
from mlops_platform.stack.tracking import http_ok

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
        return [PortClaim(self.settings.proxy_port, "MLOPS_PROXY_PORT", self.settings.proxy_host)]

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

    def write_config(self) -> None:
        private_dir(self.root, services_pass=True)  # workers pass through to tmp
        for sub in ("conf.d", "snippets", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        run_as = self.worker_user()
        (self.root / "nginx.conf").write_text(render_nginx.main_conf(self.root, run_as=run_as))
        site = render_nginx.site_conf(
            self.settings,
            upstream=f"127.0.0.1:{self.settings.server_port}",
            snippets_dir=str(self.root / "snippets"),
            access_log=str(self.root / "logs" / "access.log"),
            auth_fail_socket_path=render_nginx.auth_fail_socket(self.root),
            lockout_cache=str(self.root / "tmp" / "lockout"),
        )

        # It holds the proxy secret: readable by the master process (root or us) only.
        write_private(self.root / "conf.d" / "mlflow.conf", site)
        tls = render_nginx.tls_snippet(self.settings)
        tls_path = self.root / "snippets" / "tls.conf"
        if tls:
            tls_path.write_text(tls)
        elif tls_path.exists():
            tls_path.unlink()
        users = ensure_users_file(self.settings)
        if run_as:  # workers run as nobody: they must read the password file, write temp
            entry = pwd.getpwnam(WORKER_USER)
            if users.parent == self.settings.state_dir:
                os.chown(users, 0, entry.pw_gid)
                os.chmod(users, 0o640)
            os.chown(self.root / "tmp", entry.pw_uid, entry.pw_gid)

    def start(self, progress: Progress) -> None:
        binary = self.binary()
        self.write_config()
        # A socket left by an nginx that was killed would make the new one fail to bind;
        # never removed under a running nginx, whose workers connect to it by path.
        Path(render_nginx.auth_fail_socket(self.root)).unlink(missing_ok=True)
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

    def healthy(self) -> bool:
        scheme = "https" if self.settings.tls_enabled else "http"
        host = (
            "127.0.0.1"
            if self.settings.proxy_host in ("0.0.0.0", "::")
            else self.settings.proxy_host
        )
        if ":" in host:
            host = f"[{host}]"
        url = f"{scheme}://{host}:{self.settings.proxy_port}/-/proxy-health"
        if scheme == "https":
            return self.running() and _https_ok(url)
        return http_ok(url)


def _https_ok(url: str) -> bool:
    """Liveness over TLS; the certificate is for the public name, not for 127.0.0.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3.0, context=context) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
