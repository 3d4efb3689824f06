"""``manifest.json``: what a backup holds, and whether this kit can read it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_platform import __version__
from mlops_platform.backup.common import FORMAT, KIT, MANIFEST, SUPPORTED_FORMATS, BackupError


@dataclass(frozen=True)
class Artifact:
    key: str  # the full S3 key
    size: int
    sha256: str
    etag: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Manifest:
    id: str
    kit_version: str
    mlflow_version: str
    schema_revision: str | None
    postgres_version: str
    database: str
    bucket: str
    prefix: str
    started_at: str
    snapshot_at: str
    finished_at: str
    dump_bytes: int
    dump_sha256: str
    row_counts: dict[str, int]
    artifacts: list[Artifact]
    previous: str | None = None
    copied: int = 0
    linked: int = 0
    skipped_newer: int = 0
    skipped_unreferenced: int = 0
    skipped_unsafe: list[str] = field(default_factory=list)
    clock_skew_seconds: float = 0.0
    # MLflow's user store; None in backups of a platform without one (or made before it)
    auth_database: str | None = None
    auth_revision: str | None = None
    auth_dump_bytes: int = 0
    auth_dump_sha256: str | None = None
    auth_row_counts: dict[str, int] = field(default_factory=dict)
    format: int = FORMAT
    kit: str = KIT

    @property
    def artifact_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["artifacts"] = [a.as_dict() for a in self.artifacts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: Path) -> Manifest:
        check_compatible(data, where=where)
        try:
            values = dict(data)
            values["artifacts"] = [Artifact(**a) for a in data["artifacts"]]
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in values.items() if k in known})
        except (KeyError, TypeError) as exc:
            raise BackupError(
                f"manifest {where} is malformed ({exc.__class__.__name__}: {exc})",
                fix="this folder is not a usable backup; choose another (`mlops-platform "
                "backup list`)",
            ) from None


def _version_tuple(text: str) -> tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        return ()


def check_compatible(data: dict[str, Any], *, where: Path) -> None:
    """Refuse a manifest this kit cannot read: another tool, an unknown format, a newer kit."""
    if not isinstance(data, dict) or data.get("kit") != KIT:
        raise BackupError(
            f"{where} is not a manifest of {KIT}",
            fix="point MLOPS_BACKUP_DIR at a folder made by `mlops-platform backup create`",
        )
    fmt = data.get("format")
    version = str(data.get("kit_version", ""))
    if fmt not in SUPPORTED_FORMATS:
        raise BackupError(
            f"manifest {where} has format {fmt!r} from kit version {version or '?'}; "
            f"this kit {__version__} reads formats {list(SUPPORTED_FORMATS)}",
            fix=f"install mlops-platform {version or 'of the version that wrote it'} to use "
            "this backup",
        )
    have, need = _version_tuple(__version__), _version_tuple(version)
    if not need or need[:2] > have[:2]:
        raise BackupError(
            f"manifest {where} was written by kit version {version or '?'}, unknown to "
            f"this kit {__version__}",
            fix=f"install mlops-platform {version} (or newer) to restore it"
            if need
            else "the manifest is damaged; use another backup",
        )


def read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{path} has no {MANIFEST}",
            fix="it is not a complete backup; choose another (`mlops-platform backup list`)",
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(
            f"manifest {file} is unreadable ({exc.__class__.__name__})",
            fix="choose another backup (`mlops-platform backup list`)",
        ) from None
    return Manifest.from_dict(data, where=file)


def save_manifest(folder: Path, manifest: Manifest) -> None:
    """``manifest.json`` in ``folder``, written whole or not at all."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.as_dict(), indent=1), encoding="utf-8")
    tmp.replace(folder / MANIFEST)
