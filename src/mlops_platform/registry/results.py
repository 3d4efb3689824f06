"""What registry operations return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_platform.registry.common import APPROVED


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str
    shortfall: float | None = None

    def tag_value(self) -> str:
        return ("pass: " if self.passed else "fail: ") + self.detail


@dataclass(frozen=True)
class ApprovalResult:
    name: str
    version: str
    status: str
    gates: list[GateResult]
    actor: str
    at: str
    staging_before: str | None
    staging_moved: bool
    artifacts_digest: str | None = None
    artifacts_files: int = 0
    artifacts_bytes: int = 0

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["approved"] = self.approved
        return out


@dataclass(frozen=True)
class AliasMove:
    name: str
    alias: str
    before: str | None
    after: str
    token: str
    attempts: int


@dataclass(frozen=True)
class PromotionResult:
    name: str
    metric: str
    margin: float
    champion: str | None
    challenger: str
    champion_score: float | None
    challenger_score: float
    promoted: bool
    reason: str
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditEvent:
    key: str
    at: str
    event: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "at": self.at,
            "event": self.event,
            "actor": self.actor,
            **self.data,
        }
