"""What every service of the local stack shares: processes, ports, state, waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mlops_platform.errors import ServiceError, StateError
from mlops_platform.settings import PlatformSettings
from mlops_platform.settings.process import PRIVATE_UMASK

# Ports and OS users have their own modules; their names stay importable from here.
from mlops_platform.stack.osuser import (
    SERVICE_USER,
    chown_tree,
    ensure_service_user,
    private_dir,
    running_as_root,
    user_ids,
)
from mlops_platform.stack.ports import (
    PortClaim,
    bind_error,
    check_ports,
    pick_free_port,
    port_free,
)

__all__ = [
    "PRIVATE_UMASK",
    "SERVICE_USER",
    "STOP_TIMEOUT",
    "PortClaim",
    "Progress",
    "Service",
    "ServiceStatus",
    "StateFile",
    "bind_error",
    "check_ports",
    "chown_tree",
    "ensure_service_user",
    "log_tail",
    "pick_free_port",
    "pid_alive",
    "port_free",
    "private_dir",
    "running_as_root",
    "spawn",
    "terminate",
    "tree_rss_mb",
    "user_ids",
    "wait_until",
]

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


def leftovers(pid: int) -> list[str]:
    """What a dead service leader still leaves behind: ``pid`` itself as long as the kernel
    keeps it (a zombie its parent has not reaped), and the live members of its process
    group (children the leader had started). Each entry reads ``pid (state, name)``."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        try:
            if proc.pid == pid or (
                os.getpgid(proc.pid) == pid and proc.info["status"] != psutil.STATUS_ZOMBIE
            ):
                found.append(f"{proc.pid} ({proc.info['status']}, {proc.info['name']})")
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


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

    def clear_stale(self, progress: Progress) -> None:
        """Drop the entry of a recorded process that is gone (a crash, a reboot)."""
        progress(f"{self.name}: recorded pid {self.pid()} is gone; cleaning up the stale entry")
        self.forget()

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
