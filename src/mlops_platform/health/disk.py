"""The doctor's disk checks: free space under the state folder and PostgreSQL's data."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlops_platform.checks import CheckResult
from mlops_platform.settings import PlatformSettings

DISK_WARN_FREE = 0.10
DISK_FAIL_FREE = 0.03
DISK_FAIL_BYTES = 512 * 1024 * 1024


def _disk(component: str, path: Path) -> CheckResult:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = usage.free / usage.total if usage.total else 0.0
    gib = usage.free / 2**30
    detail = f"{gib:.1f} GiB free ({free:.0%}) under {path}"
    if free < DISK_FAIL_FREE or usage.free < DISK_FAIL_BYTES:
        return CheckResult("disk", component, "fail", detail, f"free space under {probe}")
    if free < DISK_WARN_FREE:
        return CheckResult("disk", component, "warn", detail, f"free space under {probe} soon")
    return CheckResult("disk", component, "ok", detail)


def check_disk(settings: PlatformSettings) -> list[CheckResult]:
    out = [_disk("state folder", settings.state_dir)]
    if not settings.external_db:
        out.append(_disk("postgres data", settings.state_dir / "postgres" / "data"))
    return out
