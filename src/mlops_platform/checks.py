"""One check's result and a report of many: what `doctor`, `health live|ready` and
`s3 diagnose` return.

Status: ``ok``; ``warn`` (degraded: works, but fix it); ``fail`` (broken); ``skip``. A
report's status is its worst check's; its exit code is 0 when all are ok, 1 with a
warning, 2 with a failure. ``as_dict`` is the ``--json`` form, the same for every report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]
EXIT_CODES = {"ok": 0, "warn": 1, "fail": 2}
# Where the doctor's artifact round trip writes (and deletes) its probe, under the
# artifact root: the exporter's bucket figures leave it out.
DOCTOR_PROBE_FOLDER = ".mlops-platform-doctor/"


@dataclass(frozen=True)
class CheckResult:
    """One check: what was checked (``component``, ``check``), how it went, what to do."""

    component: str
    check: str
    status: Status
    detail: str
    remedy: str = ""
    seconds: float = 0.0
    http_status: int | None = field(default=None, compare=False)  # for health.explain()

    @property
    def name(self) -> str:
        """The check's name: the S3 diagnosis's word for ``check``."""
        return self.check

    def as_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "remedy": self.remedy,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    """Checks in the order they ran, and how long they took together."""

    findings: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        states = {f.status for f in self.findings}
        return "fail" if "fail" in states else "warn" if "warn" in states else "ok"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def failing(self) -> list[CheckResult]:
        return [f for f in self.findings if f.status in ("fail", "warn")]

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "findings": [f.as_dict() for f in self.findings],
        }
