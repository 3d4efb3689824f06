"""Where backups live: the folder, its checks and lock, IDs, safe paths, listing."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_platform.backup.common import (
    BACKUP_ID,
    PARTIAL,
    BackupError,
    BackupNotFoundError,
    DestinationError,
)
from mlops_platform.backup.manifest import Manifest, read_manifest
from mlops_platform.locks import hold_exclusive
from mlops_platform.settings import PlatformSettings
from mlops_platform.units import human_size


def backup_root(settings: PlatformSettings) -> Path:
    return settings.backup_dir or settings.state_dir / "backups"


def check_destination(settings: PlatformSettings, *, create: bool) -> Path:
    """The backup folder, checked writable; created only when it is the default one."""
    root = backup_root(settings)
    if root.exists() and not root.is_dir():
        raise DestinationError(
            f"backup destination {root} is not a folder",
            fix="set MLOPS_BACKUP_DIR to a folder",
        )
    if not root.exists():
        if create and settings.backup_dir is None:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            raise DestinationError(
                f"backup destination {root} does not exist",
                fix=f"create it (mkdir -p {root}; mount the backup disk) or set MLOPS_BACKUP_DIR",
            )
    if create:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DestinationError(
                f"backup destination {root} is not writable ({exc.strerror})",
                fix="remount it read-write, give this user write access, or set "
                "MLOPS_BACKUP_DIR to a writable folder",
            ) from None
    return root


def check_space(root: Path, needed: int, *, margin: float = 1.1) -> None:
    """Refuse when the folder's file system has less than ``needed`` bytes (+10%) free."""
    free = shutil.disk_usage(root).free
    if free < needed * margin:
        raise DestinationError(
            f"backup destination {root} has {human_size(free)} free, the backup needs about "
            f"{human_size(int(needed * margin))}",
            fix="free space there (`mlops-platform backup prune --keep N`) or set "
            "MLOPS_BACKUP_DIR to a larger disk",
        )


def new_id(now: dt.datetime, existing: set[str]) -> str:
    base = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = base, 1
    while candidate in existing or candidate + PARTIAL in existing:
        candidate = f"{base}-{n}"
        n += 1
    return candidate


def safe_relative(key: str, prefix: str) -> str | None:
    """The key below the prefix as a relative path, or None when it could escape the folder."""
    if not key.startswith(prefix + "/"):
        return None
    rel = key[len(prefix) + 1 :]
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\x00" in rel:
        return None
    return rel


def relative_key(key: str, settings_or_prefix: PlatformSettings | str) -> str:
    prefix = (
        settings_or_prefix if isinstance(settings_or_prefix, str) else settings_or_prefix.s3_prefix
    )
    rel = safe_relative(key, prefix)
    if rel is None:
        raise BackupError(
            f"artifact key {key!r} is not a safe path below {prefix}/",
            fix="the manifest was edited or damaged; use another backup",
        )
    return rel


@contextlib.contextmanager
def backup_lock(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as lock:
        hold_exclusive(
            lock,
            BackupError(
                f"another backup, restore or prune is working on {root}",
                fix="wait for it to finish",
            ),
        )
        yield


# -- reading backups -------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    started_at: str
    finished_at: str
    kit_version: str
    mlflow_version: str
    schema_revision: str | None
    runs: int
    artifacts: int
    artifact_bytes: int
    dump_bytes: int
    copied: int
    linked: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def complete_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and BACKUP_ID.match(p.name))


def list_backups(settings: PlatformSettings) -> list[BackupInfo]:
    """Complete backups, oldest first. Folders that are not backups are ignored."""
    if settings.backup_dir is None and not backup_root(settings).exists():
        return []  # the default folder appears with the first backup
    root = check_destination(settings, create=False)
    out: list[BackupInfo] = []
    for backup_id in complete_ids(root):
        try:
            m = read_manifest(root / backup_id)
        except BackupError:
            continue
        out.append(
            BackupInfo(
                id=m.id,
                path=root / backup_id,
                started_at=m.started_at,
                finished_at=m.finished_at,
                kit_version=m.kit_version,
                mlflow_version=m.mlflow_version,
                schema_revision=m.schema_revision,
                runs=m.row_counts.get("runs", 0),
                artifacts=len(m.artifacts),
                artifact_bytes=m.artifact_bytes,
                dump_bytes=m.dump_bytes,
                copied=m.copied,
                linked=m.linked,
            )
        )
    return out


def find_backup(settings: PlatformSettings, backup_id: str) -> tuple[Path, Manifest]:
    root = check_destination(settings, create=False)
    ids = complete_ids(root)
    if backup_id == "latest" and ids:
        backup_id = ids[-1]
    path = root / backup_id
    if not BACKUP_ID.match(backup_id) or not path.is_dir():
        shown = ", ".join(reversed(ids[-3:])) if ids else "none yet"  # newest first
        raise BackupNotFoundError(
            f"no backup {backup_id!r} in {root} (newest: {shown})",
            fix="run `mlops-platform backup list` and pass one of its IDs, or `latest`",
        )
    return path, read_manifest(path)


def previous_backup(root: Path, settings: PlatformSettings) -> tuple[Path, Manifest] | None:
    """The newest complete backup of the same bucket and prefix: what an incremental
    backup links unchanged objects from."""
    for backup_id in reversed(complete_ids(root)):
        try:
            m = read_manifest(root / backup_id)
        except BackupError:
            continue
        if m.bucket == settings.s3_bucket and m.prefix == settings.s3_prefix:
            return root / backup_id, m
    return None
