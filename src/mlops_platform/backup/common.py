"""What every part of a backup shares: the folder layout, the errors, progress reporting."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Protocol

from mlops_platform.errors import PlatformError

FORMAT = 1
SUPPORTED_FORMATS = (1,)
KIT = "mlops-platform"
MANIFEST = "manifest.json"
DUMP = "database.dump"
AUTH_DUMP = "auth.dump"
ARTIFACTS = "artifacts"
PARTIAL = ".partial"
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20


class BackupError(PlatformError):
    """A backup cannot be made, read, verified or restored."""


class BackupNotFoundError(BackupError):
    """No backup has that ID."""


class DestinationError(BackupError):
    """The backup folder is missing, read-only or too small."""


class NotEmptyError(BackupError):
    """The platform to restore onto already holds data."""


# -- reporting -------------------------------------------------------------------------


class Reporter(Protocol):
    """Where long operations say what they do: messages, and a byte counter for copies."""

    def message(self, text: str) -> None: ...

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


class QuietReporter:
    def message(self, text: str) -> None:
        pass

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
