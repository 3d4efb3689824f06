"""The doctor's artifact store checks: the encryption key, then the S3 diagnosis's quick
checks."""

from __future__ import annotations

import json

from mlops_platform import s3
from mlops_platform.checks import CheckResult
from mlops_platform.settings import PlatformSettings


def check_store(settings: PlatformSettings) -> list[CheckResult]:
    out = _check_sse_key(settings)
    if any(f.status == "fail" for f in out):
        return out  # the round trips would fail or hang on retries: the key is the cause
    return out + s3.diagnose(settings, timeout=3.0, quick=True).findings


def _check_sse_key(settings: PlatformSettings) -> list[CheckResult]:
    """The local SeaweedFS's encryption key: the env file's, the one the artifacts were
    written under, and the one the running server got must be the same."""
    if not settings.local_seaweedfs:
        return []
    from mlops_platform.sse_key import KeyState, key_state

    try:
        state = json.loads((settings.state_dir / "state.json").read_text(encoding="utf-8"))
        running = state.get("services", {}).get("seaweedfs", {}).get("sse_kek")
    except (OSError, ValueError, AttributeError):
        running = None
    keys = key_state(settings, running)
    if keys.problem:
        return [CheckResult("s3", "encryption key", "fail", keys.problem, KeyState.FIX)]
    if keys.configured is None:
        return [
            CheckResult(
                "s3",
                "encryption key",
                "warn",
                "MLOPS_S3_SSE_KEK is not set: artifacts are not encrypted at rest",
                "`mlops-platform init` adds the key to your env file; then "
                "`mlops-platform down && mlops-platform up`",
            )
        ]
    return [
        CheckResult(
            "s3",
            "encryption key",
            "ok",
            f"SSE key {keys.configured} is the one the artifacts are written under",
        )
    ]
