"""2. Writes: the write workloads on both servers, alternately, and PostgreSQL itself."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import Stack
from benchmarks.harness.base import WRITE_KINDS, Report, Sizes, log, ratio
from benchmarks.throughput import Target, client, measure, raw_postgres

# -- 2. writes --------------------------------------------------------------------------


def writes(stack: Stack, kit: Target, reference: Target, sizes: Sizes, report: Report) -> None:
    s = stack.settings
    dsn = {
        "host": "127.0.0.1",
        "port": s.db_port,
        "user": s.db_user,
        "password": s.db_password.get_secret_value(),
        "dbname": "reference",
    }
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for round_no in range(sizes.rounds):
        log(f"writes: round {round_no + 1}/{sizes.rounds}")
        for kind in WRITE_KINDS:
            for n in sizes.clients:
                for target in (reference, kit):
                    args = [(target, kind, sizes.seconds, i) for i in range(n)]
                    results.setdefault((kind, target.name, n), []).append(measure(n, client, args))
        for n in sizes.clients:
            pg_args = [(dsn, sizes.seconds, i) for i in range(n)]
            results.setdefault(("raw", "postgres", n), []).append(measure(n, raw_postgres, pg_args))

    def median(key: tuple[str, str, int], name: str) -> float:
        return round(statistics.median(r.get(name, 0.0) for r in results[key]), 1)

    for kind in WRITE_KINDS:
        for n in sizes.clients:
            ref, ours, raw = (kind, reference.name, n), (kind, kit.name, n), ("raw", "postgres", n)
            row: dict[str, Any] = {
                "workload": kind,
                "clients": n,
                "reference_rows_s": median(ref, "rows_s"),
                "kit_rows_s": median(ours, "rows_s"),
                "raw_postgres_rows_s": median(raw, "rows_s"),
                "reference_p50_ms": median(ref, "p50_ms"),
                "reference_p95_ms": median(ref, "p95_ms"),
                "kit_p50_ms": median(ours, "p50_ms"),
                "kit_p95_ms": median(ours, "p95_ms"),
                "errors": int(sum(r["errors"] for r in results[ref] + results[ours])),
            }
            row["kit_vs_reference"] = ratio(row["kit_rows_s"], row["reference_rows_s"])
            row["reference_fraction_of_raw"] = ratio(
                row["reference_rows_s"], row["raw_postgres_rows_s"]
            )
            row["kit_fraction_of_raw"] = ratio(row["kit_rows_s"], row["raw_postgres_rows_s"])
            report.writes.append(row)
