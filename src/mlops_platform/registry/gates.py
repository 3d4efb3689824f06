"""Quality gates: what a version must satisfy, read from a YAML file."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_platform.registry.errors import GatesFileError
from mlops_platform.registry.results import GateResult

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
GATE_KEYS = ("metrics", "tags", "signature", "max_size_mb")


@dataclass(frozen=True)
class MetricGate:
    metric: str
    op: str
    threshold: float

    def check(self, value: float) -> GateResult:
        passed = OPERATORS[self.op](value, self.threshold)
        detail = f"{self.metric} = {value:.6g}, needs {self.op} {self.threshold:g}"
        shortfall = None
        if not passed:
            shortfall = abs(value - self.threshold)
            if self.op in ("==", "!="):
                detail += " (off target)" if self.op == "==" else " (equal)"
            else:
                detail += f" (short by {shortfall:.6g})"
        return GateResult(f"metric.{self.metric}", passed, detail, shortfall)


@dataclass(frozen=True)
class Gates:
    """What a version must satisfy before it may be staged or promoted."""

    metrics: tuple[MetricGate, ...] = ()
    required_tags: dict[str, str | None] = field(default_factory=dict)
    signature: bool = False
    max_size_mb: float | None = None

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "gates file") -> Gates:
        if not isinstance(data, dict):
            raise GatesFileError(
                f"{source} must be a mapping with keys {', '.join(GATE_KEYS)}",
                fix="see docs/registry.md for an example gates file",
            )
        unknown = sorted(set(data) - set(GATE_KEYS))
        if unknown:
            raise GatesFileError(
                f"unknown key {unknown[0]!r} in {source} (known: {', '.join(GATE_KEYS)})",
                fix="fix the typo in the gates file",
            )
        metrics = []
        raw_metrics = data.get("metrics") or {}
        if not isinstance(raw_metrics, dict):
            raise GatesFileError(
                f"`metrics` in {source} must map a metric to a condition, e.g. accuracy: '>= 0.9'",
                fix="fix the gates file",
            )
        for metric, condition in raw_metrics.items():
            metrics.append(parse_condition(str(metric), condition, source))
        raw_tags = data.get("tags") or []
        if isinstance(raw_tags, list):
            tags: dict[str, str | None] = {str(t): None for t in raw_tags}
        elif isinstance(raw_tags, dict):
            tags = {str(k): None if v is None else str(v) for k, v in raw_tags.items()}
        else:
            raise GatesFileError(
                f"`tags` in {source} must be a list of tag names or a mapping of tag to value",
                fix="fix the gates file",
            )
        signature = data.get("signature", False)
        if not isinstance(signature, bool):
            raise GatesFileError(
                f"`signature` in {source} must be true or false, not {signature!r}",
                fix="fix the gates file",
            )
        size = data.get("max_size_mb")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int | float) or size <= 0
        ):
            raise GatesFileError(
                f"`max_size_mb` in {source} must be a positive number, not {size!r}",
                fix="fix the gates file",
            )
        return cls(tuple(metrics), tags, signature, None if size is None else float(size))

    @classmethod
    def load(cls, path: Path) -> Gates:
        import yaml

        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GatesFileError(
                f"cannot read gates file {path}: {exc.strerror or exc}",
                fix="pass an existing YAML file with --gates",
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise GatesFileError(
                f"gates file {path} is not valid YAML{where}", fix="fix its syntax"
            ) from None
        return cls.from_mapping(data, source=str(path))


def parse_condition(metric: str, condition: Any, source: str) -> MetricGate:
    if isinstance(condition, bool) or not isinstance(condition, str | int | float):
        raise GatesFileError(
            f"condition for metric {metric!r} in {source} must be like '>= 0.9', not {condition!r}",
            fix="fix the gates file",
        )
    if isinstance(condition, int | float):
        return MetricGate(metric, ">=", float(condition))
    text = condition.strip()
    op = next((o for o in (">=", "<=", "==", "!=", ">", "<") if text.startswith(o)), None)
    rest = text[len(op) :] if op else text.lstrip("=<>!~")
    if op is None or rest.strip()[:1] in ("=", "<", ">", "!"):
        bad = text[: len(text) - len(text.lstrip("=<>!~")) or 1]
        raise GatesFileError(
            f"bad operator {bad!r} for metric {metric!r} in {source} "
            f"(use one of {', '.join(OPERATORS)})",
            fix="fix the gates file",
        )
    try:
        threshold = float(rest)
    except ValueError:
        raise GatesFileError(
            f"threshold {rest.strip()!r} for metric {metric!r} in {source} is not a number",
            fix="fix the gates file",
        ) from None
    if not math.isfinite(threshold):
        raise GatesFileError(
            f"threshold for metric {metric!r} in {source} must be finite", fix="fix it"
        )
    return MetricGate(metric, op, threshold)
