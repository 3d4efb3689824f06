"""Artifact pinning: approval records a digest over every file of the version; moving an
alias onto it and serving it refuse when the files changed since."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_platform.registry.client import RegistryClient
from mlops_platform.registry.common import (
    APPROVED,
    DIGEST_TAG,
    FILES_TAG,
    STATUS_TAG,
    TAG_VALUE_LIMIT,
    server_error,
)
from mlops_platform.registry.errors import (
    ArtifactsChangedError,
    NotApprovedError,
    PromotionConflictError,
    RegistryError,
)


@dataclass(frozen=True)
class ArtifactDigest:
    """What approval pins: one digest over every file, and each file's size and sha256."""

    digest: str
    files: dict[str, tuple[int, str]]

    @property
    def size_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    def summary(self) -> str:
        return f"{len(self.files)} files, {self.size_bytes} bytes"

    def files_tag(self) -> str | None:
        """Each file's size and short hash, to name what changed later; None when too long."""
        value = json.dumps(
            {path: [size, sha[:16]] for path, (size, sha) in sorted(self.files.items())},
            separators=(",", ":"),
        )
        return value if len(value) <= TAG_VALUE_LIMIT else None

    def changes_since(self, files_tag: str | None) -> str:
        """The files that differ from the approved list (``files_tag``), as one short phrase."""
        try:
            recorded = json.loads(files_tag or "")
            before = {str(k): (int(v[0]), str(v[1])) for k, v in recorded.items()}
        except (ValueError, TypeError, AttributeError, IndexError):
            return f"now {self.summary()}"
        now = {path: (size, sha[:16]) for path, (size, sha) in self.files.items()}
        parts = []
        for label, paths in (
            ("changed", [p for p in now if p in before and now[p] != before[p]]),
            ("added", [p for p in now if p not in before]),
            ("removed", [p for p in before if p not in now]),
        ):
            if paths:
                shown = sorted(paths)
                more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
                parts.append(f"{label}: {', '.join(shown[:3])}{more}")
        return "; ".join(parts) or f"now {self.summary()}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest_tree(root: Path) -> ArtifactDigest:
    """sha256 over the sorted ``[relative path, size, sha256 of content]`` of every file.

    The list is JSON-encoded (``[["MLmodel",123,"ab.."],...]``, no spaces) before hashing,
    so a path cannot be confused with a size or a hash. Anyone can recompute it from a
    download of the version's artifacts.
    """
    root = Path(root)
    files: dict[str, tuple[int, str]] = {}
    if root.is_file():
        files[root.name] = (root.stat().st_size, file_sha256(root))
    else:
        for path in root.rglob("*"):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = (path.stat().st_size, file_sha256(path))
    canonical = json.dumps(
        sorted([path, size, sha] for path, (size, sha) in files.items()),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return ArtifactDigest("sha256:" + hashlib.sha256(canonical.encode()).hexdigest(), files)


@dataclass(frozen=True)
class VerifiedCopy:
    """A local copy of an approved version whose files match the approval's digest."""

    name: str
    version: str
    alias: str | None
    path: Path
    artifacts: ArtifactDigest

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "path": str(self.path),
            "artifacts_digest": self.artifacts.digest,
            "files": len(self.artifacts.files),
            "size_bytes": self.artifacts.size_bytes,
        }


class Pinning(RegistryClient):
    """The registry's second layer: download a version, hash it, compare with its pin."""

    def _require_approved(self, name: str, version: str, *, digest: str | None = None) -> str:
        """The approval's artifact digest; raises when not approved, unpinned or re-pinned.

        ``digest``: the pin this caller verified the files against; when the tag now holds
        another one, the version was approved again meanwhile (a conflict: re-run).
        """
        tags = self.model_version(name, version).tags
        status = tags.get(STATUS_TAG)
        fix = f"run: mlops-platform registry approve {name} {version} --gates gates.yaml"
        if status != APPROVED:
            raise NotApprovedError(
                f"{name} v{version} is not approved ({STATUS_TAG}={status or 'unset'})", fix=fix
            )
        pin = tags.get(DIGEST_TAG)
        if not pin:
            raise ArtifactsChangedError(
                f"{name} v{version} was approved before approvals pinned artifacts "
                f"(no {DIGEST_TAG} tag), so its files cannot be checked",
                fix=f"approve it again: mlops-platform registry approve {name} {version} "
                "--gates gates.yaml",
            )
        if digest is not None and pin != digest:
            raise PromotionConflictError(
                f"{name} v{version} was approved again with other artifacts while this "
                "command was checking them; nothing was changed",
                fix="re-run the command",
            )
        return str(pin)

    def _compare_pin(self, name: str, version: str, pin: str, actual: ArtifactDigest) -> None:
        if actual.digest == pin:
            return
        files_tag = self.model_version(name, version).tags.get(FILES_TAG)
        raise ArtifactsChangedError(
            f"the artifacts of {name} v{version} changed after its approval "
            f"({actual.changes_since(files_tag)}; approved {pin[:19]}..., "
            f"now {actual.digest[:19]}...)",
            fix="find out who wrote them; if the new files are intended, approve it again: "
            f"mlops-platform registry approve {name} {version} --gates gates.yaml",
        )

    def download_version(self, name: str, version: str, dst: Path) -> Path:
        """Every file of the version, through the tracking server, into ``dst``."""
        from mlflow.artifacts import download_artifacts

        uri = self.client.get_model_version_download_uri(name, version)
        try:
            local = download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        except Exception as exc:
            raise server_error(
                f"download the artifacts of {name} v{version} ({uri})", exc, self.tracking_uri
            ) from None
        return Path(local)

    def artifacts_digest(self, name: str, version: str) -> ArtifactDigest:
        """The digest of the version's artifacts as the tracking server serves them now."""
        with tempfile.TemporaryDirectory(prefix="mlops-pin-") as tmp:
            return digest_tree(self.download_version(name, version, Path(tmp)))

    def verify_artifacts(self, name: str, version: str | int) -> ArtifactDigest:
        """Raise unless the version is approved and its files are the ones approved."""
        version = str(version)
        pin = self._require_approved(name, version)
        actual = self.artifacts_digest(name, version)
        self._compare_pin(name, version, pin, actual)
        return actual

    def fetch_verified(
        self, name: str, dst: Path, *, alias: str | None = None, version: str | None = None
    ) -> VerifiedCopy:
        """Download an approved version (or the one ``alias`` names) and check the copy.

        What a server loads from ``path`` is exactly what was verified: no second download
        that could differ.
        """
        if (alias is None) == (version is None):
            raise RegistryError("name either an alias or a version", fix="pass one of them")
        if alias is not None:
            version = self.require_alias(name, alias)
        version = str(version)
        self.model_version(name, version)
        pin = self._require_approved(name, version)
        local = self.download_version(name, version, Path(dst))
        actual = digest_tree(local)
        self._compare_pin(name, version, pin, actual)
        return VerifiedCopy(name, version, alias, local, actual)
