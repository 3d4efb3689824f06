"""`doctor`: every check of the platform, each with status, detail and remedy.

MLflow's ``/health`` answers OK while the database is down, the schema is half
migrated, the bucket is public or the proxy lets anyone in. These checks go further:
they log in through the proxy, touch the database with a real API call, write and read
an artifact, and try the proxy without credentials.

Each check is a :class:`mlops_platform.checks.CheckResult` (``Finding`` here), the doctor
returns a :class:`mlops_platform.checks.Report`: status ``ok``, ``warn`` (degraded:
works, but fix it) or ``fail`` (broken); exit code 0 when all are ok, 1 with a warning, 2
with a failure.

The package, one module per group of checks: ``database`` (and the settings), ``store``,
``server``, ``proxy`` (with ``remedies``: fixes that depend on the other findings), ``disk``.
Everything callers use is importable from ``mlops_platform.health`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import requests

from mlops_platform import s3
from mlops_platform.checks import EXIT_CODES, CheckResult, Report, Status
from mlops_platform.errors import PlatformError
from mlops_platform.health.database import check_database, check_settings
from mlops_platform.health.disk import (
    DISK_FAIL_BYTES,
    _disk,
    check_disk,
)
from mlops_platform.health.proxy import BODY_PROBE_BYTES, _proxy_target, check_proxy
from mlops_platform.health.remedies import (
    GATEWAY_ERRORS,
    TRACKING_DOWN,
    artifact_remedy,
    explain,
)
from mlops_platform.health.server import check_identity, check_server, server_base
from mlops_platform.health.store import check_store
from mlops_platform.settings import PlatformSettings

Finding = CheckResult  # the doctor's word for one check's result

__all__ = [
    "BODY_PROBE_BYTES",
    "CHECKS",
    "DISK_FAIL_BYTES",
    "EXIT_CODES",
    "GATEWAY_ERRORS",
    "TRACKING_DOWN",
    "Finding",
    "Report",
    "Status",
    "_disk",
    "_proxy_target",
    "artifact_remedy",
    "check_database",
    "check_disk",
    "check_identity",
    "check_proxy",
    "check_server",
    "check_settings",
    "check_store",
    "doctor",
    "explain",
    "liveness",
    "readiness",
]

CHECKS: tuple[tuple[str, Callable[[PlatformSettings], list[CheckResult]]], ...] = (
    ("settings", check_settings),
    ("database", check_database),
    ("s3", check_store),
    ("tracking", check_server),
    ("proxy", check_proxy),
    ("disk", check_disk),
)


def doctor(
    settings: PlatformSettings,
    *,
    progress: Callable[[str], None] | None = None,
    skip: Iterable[str] = (),
) -> Report:
    """Run every check (but the groups named in ``skip``); a check that raises becomes a
    failure, never a traceback."""
    report = Report()
    start = time.monotonic()
    skipped = set(skip)
    for name, check in CHECKS:
        if name in skipped:
            continue
        if progress:
            progress(f"checking {name}")
        try:
            report.findings += check(settings)
        except PlatformError as exc:
            report.findings.append(CheckResult(name, "error", "fail", exc.message, exc.fix or ""))
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            report.findings.append(
                CheckResult(name, "error", "fail", f"{exc.__class__.__name__}: {exc}"[:300])
            )
    report.findings = explain(report.findings)
    report.seconds = time.monotonic() - start
    return report


def liveness(settings: PlatformSettings, *, timeout: float = 3.0) -> CheckResult:
    """The tracking process answers (GET /health on the server itself)."""
    try:
        response = requests.get(server_base(settings) + "/health", timeout=timeout)
        if response.status_code == 200:
            return CheckResult("tracking", "live", "ok", "GET /health: 200")
        return CheckResult("tracking", "live", "fail", f"GET /health: {response.status_code}")
    except requests.RequestException as exc:
        return CheckResult(
            "tracking",
            "live",
            "fail",
            f"{server_base(settings)} does not answer ({exc.__class__.__name__})",
            "restart the server (`mlops-platform up`); `mlops-platform logs tracking` says why",
        )


def readiness(settings: PlatformSettings) -> Report:
    """The server answers and can reach its database (at head) and its store."""
    report = Report()
    start = time.monotonic()
    report.findings.append(liveness(settings))
    try:
        report.findings += [f for f in check_database(settings) if f.check != "index pack"]
    except PlatformError as exc:
        report.findings.append(CheckResult("database", "error", "fail", exc.message, exc.fix or ""))
    try:
        s3.client(settings, timeout=3, retries=1).head_bucket(Bucket=settings.s3_bucket)
        report.findings.append(CheckResult("s3", "bucket", "ok", f"{settings.s3_bucket} reachable"))
    except Exception as exc:  # noqa: BLE001 - a probe reports
        report.findings.append(
            CheckResult(
                "s3", "bucket", "fail", f"{exc.__class__.__name__}", "`mlops-platform s3 diagnose`"
            )
        )
    report.seconds = time.monotonic() - start
    return report
