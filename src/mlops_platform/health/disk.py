"""The doctor's disk checks: free space under the state folder and PostgreSQL's data."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlops_platform.checks import CheckResult
from mlops_platform.settings import PlatformSettings

DISK_FAIL_BYTES = 512 * 1024 * 1024


def _disk(component: str, path: Path, warn_percent: float, fail_percent: float) -> CheckResult:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = usage.free / usage.total if usage.total else 0.0
    gib = usage.free / 2**30
    detail = f"{gib:.1f} GiB free ({free:.0%}) under {path}"
    if free < fail_percent / 100 or usage.free < DISK_FAIL_BYTES:
        return CheckResult("disk", component, "fail", detail, f"free space under {probe}")
    if free < warn_percent / 100:
        return CheckResult(
            "disk",
            component,
            "warn",
            detail,
            f"free space under {probe} soon (or lower MLOPS_DISK_WARN_FREE_PERCENT, "
            f"now {warn_percent:g})",
        )
    return CheckResult("disk", component, "ok", detail)


def check_disk(settings: PlatformSettings) -> list[CheckResult]:
    lines = (settings.disk_warn_free_percent, settings.disk_fail_free_percent)
    out = [_disk("state folder", settings.state_dir, *lines)]
    if not settings.external_db:
        out.append(_disk("postgres data", settings.state_dir / "postgres" / "data", *lines))
    return out
