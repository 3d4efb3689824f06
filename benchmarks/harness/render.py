"""The report for people: markdown tables of medians and ratios."""

from __future__ import annotations

from typing import Any

from benchmarks.harness.base import Report


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def memory_table(report: Report) -> str:
    """Start-up and memory: the reference server, the kit's stack and each of its parts."""
    rows = [
        ("reference `mlflow server` alone", "reference server"),
        ("kit: whole stack", "kit stack"),
        *(
            (f"- {name.removeprefix('kit ')}", name)
            for name in report.memory
            if name.startswith("kit ") and name != "kit stack"
        ),
    ]
    return table(
        [
            "",
            "to healthy (s)",
            "processes",
            "PSS at start (MB)",
            "PSS after the run (MB)",
            "RSS sum after (MB)",
        ],
        [
            [
                label,
                report.startup[name]["seconds_to_healthy"] if name in report.startup else "",
                report.memory[name]["processes"],
                report.memory_at_start.get(name, {}).get("pss_mb", "-"),
                report.memory[name]["pss_mb"],
                report.memory[name]["rss_mb"],
            ]
            for label, name in rows
        ],
    )


def writes_table(writes: list[dict[str, Any]]) -> str:
    headers = ["workload", "clients", "reference rows/s", "kit rows/s", "kit/reference",
               "raw PG rows/s", "reference % of raw", "kit % of raw", "p50 ms ref / kit",
               "p95 ms ref / kit"]  # fmt: skip
    return table(
        headers,
        [
            [
                r["workload"],
                r["clients"],
                r["reference_rows_s"],
                r["kit_rows_s"],
                f"**{r['kit_vs_reference']}x**",
                r["raw_postgres_rows_s"],
                f"{100 * r['reference_fraction_of_raw']:.0f} %",
                f"{100 * r['kit_fraction_of_raw']:.0f} %",
                f"{r['reference_p50_ms']} / {r['kit_p50_ms']}",
                f"{r['reference_p95_ms']} / {r['kit_p95_ms']}",
            ]  # fmt: skip
            for r in writes
        ],
    )


def search_table(search: list[dict[str, Any]]) -> str:
    headers = ["workload", "reference p50 ms", "kit p50 ms", "kit speed-up", "reference p95 ms",
               "kit p95 ms"]  # fmt: skip
    return table(
        headers,
        [
            [
                r["workload"],
                r["reference_p50_ms"],
                r["kit_p50_ms"],
                f"**{r['kit_speedup_p50']}x**",
                r["reference_p95_ms"],
                r["kit_p95_ms"],
            ]
            for r in search
        ],  # fmt: skip
    )


def artifacts_table(artifacts: list[dict[str, Any]]) -> str:
    headers = ["direction", "reference MB/s", "kit MB/s (proxy)", "kit/reference",
               "store directly MB/s", "kit/store"]  # fmt: skip
    return table(
        headers,
        [
            [
                r["direction"],
                r["reference_mb_s"],
                r["kit_mb_s"],
                f"**{r['kit_vs_reference']}x**",
                r["store_direct_mb_s"],
                f"{r['kit_fraction_of_store']}x",
            ]
            for r in artifacts
        ],  # fmt: skip
    )


def streamed_table(streamed: dict[str, dict[str, Any]]) -> str:
    return table(
        ["server", "first byte s", "MB/s", "of the store's rate", "peak server temp MB"],
        [
            [
                name,
                r["first_byte_s"],
                r["mb_s"],
                f"{r['fraction_of_store']}x",
                r["peak_server_tmp_mb"],
            ]
            for name, r in streamed.items()
        ],
    )


def render(report: Report) -> str:
    """The report as Markdown tables (what docs/performance.md carries)."""
    out = [
        f"{report.machine['cpus']} cores, {report.machine['memory_gb']} GiB; medians of "
        f"{report.sizes['rounds']} alternating rounds; harness ran {report.seconds:.0f} s.",
        "The kit's settings for the run: "
        + (", ".join(f"{k}={v}" for k, v in sorted(report.settings.items())) or "defaults")
        + ".",
        "",
        memory_table(report),
    ]
    if report.writes:
        out += ["", writes_table(report.writes)]
    if report.search:
        out += [
            "",
            f"Reads on {report.search[0]['runs']} runs in each database:",
            "",
            search_table(report.search),
        ]
    if report.artifacts:
        out += [
            "",
            f"One {report.artifacts[0]['size_mb']} MB artifact:",
            "",
            artifacts_table(report.artifacts),
        ]
    if report.artifacts_streamed:
        out += [
            "",
            "One streamed GET of it (requests; first byte within 64 KB, then 1 MB reads),"
            " and the same read straight from the store; medians of 4 rounds or more:",
            "",
            streamed_table(report.artifacts_streamed),
        ]
    return "\n".join(out)
