"""The local SeaweedFS's encryption key (MLOPS_S3_SSE_KEK): which key the env file holds,
which one the stored artifacts were written under, which one the running server got.

A leaf: ``doctor`` reads it without importing the local runner; the stack's SeaweedFS
writes the record and refuses to start under another key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlops_platform.settings import PlatformSettings

SSE_KEK_RECORD = "sse_kek.fingerprint"


def kek_fingerprint(kek: str) -> str:
    """A short name of an SSE key that reveals nothing about it (it is 256 random bits)."""
    return hashlib.sha256(b"mlops-platform s3.sse.kek\0" + kek.lower().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class KeyState:
    """The SSE key of the env file against the one the stored artifacts were written
    under (``stored``) and the one the running SeaweedFS got (``running``)."""

    configured: str | None
    stored: str | None
    running: str | None

    @property
    def problem(self) -> str | None:
        if self.stored and self.configured is None:
            return (
                f"MLOPS_S3_SSE_KEK is not set, but the artifacts were written encrypted under "
                f"the key with fingerprint {self.stored}: without it they cannot be read and "
                "writes fail"
            )
        if self.stored and self.configured != self.stored:
            return (
                f"MLOPS_S3_SSE_KEK changed (fingerprint {self.configured}): the artifacts were "
                f"written under the key with fingerprint {self.stored} and cannot be read "
                "under another"
            )
        if self.running and self.running != self.configured:
            return (
                f"SeaweedFS runs with the key {self.running}, the env file holds "
                f"{self.configured or 'none'}: the env file was edited after `up`"
            )
        return None

    FIX = (
        "put the previous MLOPS_S3_SSE_KEK back in the env file (from your backup of it), "
        "then `mlops-platform down && mlops-platform up`"
    )


def key_state(settings: PlatformSettings, running: str | None = None) -> KeyState:
    kek = settings.s3_sse_kek.get_secret_value()
    record = settings.state_dir / "seaweedfs" / SSE_KEK_RECORD
    try:
        stored = record.read_text(encoding="utf-8").strip() or None
    except OSError:
        stored = None
    return KeyState(kek_fingerprint(kek) if kek else None, stored, running)
