"""What every part of the harness shares: the sizes, the report, logging, a ratio."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sizes:
    clients: tuple[int, ...]
    seconds: float
    rounds: int
    runs: int
    artifact_mb: int
    search_repeats: int


FULL = Sizes(clients=(1, 4, 16), seconds=3.0, rounds=3, runs=100_000, artifact_mb=1024,
             search_repeats=10)  # fmt: skip
QUICK = Sizes(clients=(1, 4), seconds=1.0, rounds=1, runs=2_000, artifact_mb=16, search_repeats=3)

WRITE_KINDS = ("log_metric", "log_batch")


@dataclass
class Report:
    sizes: dict[str, Any]
    machine: dict[str, Any]
    settings: dict[str, str] = field(default_factory=dict)
    startup: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[dict[str, Any]] = field(default_factory=list)
    search: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    artifacts_streamed: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)  # after every workload
    memory_at_start: dict[str, Any] = field(default_factory=dict)  # once healthy
    seconds: float = 0.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0
