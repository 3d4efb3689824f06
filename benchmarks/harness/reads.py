"""3. Reads on a large database: both databases populated alike, then the same reads timed
on both, alternately.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import requests

from benchmarks import indexes as index_bench
from benchmarks.common import Stack
from benchmarks.harness.base import Report, Sizes, log, ratio
from benchmarks.throughput import Target
from mlops_platform import indexes
from mlops_platform.settings import PlatformSettings

# -- 3. reads on a large database -------------------------------------------------------


@dataclass
class Read:
    name: str
    method: str
    path: str
    body: dict[str, Any]


def reads(experiments: list[int], sample_run: str) -> list[Read]:
    big, medium, small = experiments[0], experiments[1], experiments[11]
    search = "/api/2.0/mlflow/runs/search"
    out = []
    for label, exp in (("big exp", big), ("medium exp", medium)):
        out.append(
            Read(
                f"search: metric + param filter, order by metric ({label})",
                "POST",
                search,
                {
                    "experiment_ids": [str(exp)],
                    "filter": "metrics.accuracy > 0.9 and params.model = 'bert-base'",
                    "order_by": ["metrics.accuracy DESC"],
                    "max_results": 100,
                },
            )
        )
    for label, exp in (("small exp", small), ("medium exp", medium), ("big exp", big)):
        out.append(
            Read(
                f"list runs by start time ({label})",
                "POST",
                search,
                {
                    "experiment_ids": [str(exp)],
                    "order_by": ["attributes.start_time DESC"],
                    "max_results": 100,
                },
            )
        )
    out.append(
        Read(
            "search: one run by param, every exp",
            "POST",
            search,
            {
                "experiment_ids": [str(e) for e in experiments],
                "filter": "params.seed = '1234'",
                "max_results": 10,
            },
        )
    )
    out.append(
        Read(
            "metric history (one run)",
            "GET",
            "/api/2.0/mlflow/metrics/get-history",
            {"run_id": sample_run, "metric_key": "loss"},
        )
    )
    return out


def populate(settings: PlatformSettings, tracking_uri: str, runs: int) -> tuple[list[Read], int]:
    """Template runs through the server's API, replicated in SQL to ``runs`` runs."""
    data = index_bench.populate(settings, runs, tracking_uri=tracking_uri)
    return reads(data.experiments, data.sample_run), data.total_runs


def time_read(target: Target, read: Read, repeats: int) -> list[float]:
    session = requests.Session()
    session.auth = target.auth
    url = target.url + read.path
    latencies = []
    for _ in range(repeats + 1):  # the first one warms the connection and caches
        start = time.perf_counter()
        if read.method == "GET":
            response = session.get(url, params=read.body, timeout=120)
        else:
            response = session.post(url, json=read.body, timeout=120)
        latencies.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    session.close()
    return latencies[1:]


def search(stack: Stack, kit: Target, reference: Target, sizes: Sizes, report: Report) -> None:
    settings = stack.settings
    ref_settings = settings.model_copy(update={"db_name": "reference"})
    start = time.monotonic()
    log(f"reads: populating the reference database to {sizes.runs} runs")
    ref_reads, ref_runs = populate(ref_settings, reference.url, sizes.runs)
    log(f"reads: populating the kit's database to {sizes.runs} runs")
    kit_reads, kit_runs = populate(settings, kit.url, sizes.runs)
    log(f"reads: populated in {time.monotonic() - start:.0f}s; applying the kit's index pack")
    indexes.apply_pack(settings)
    for s in (settings, ref_settings):  # fresh statistics on both: the comparison is fair
        indexes.analyze(s)
    samples: dict[tuple[str, str], list[float]] = {}
    for round_no in range(sizes.rounds):
        log(f"reads: round {round_no + 1}/{sizes.rounds}")
        for ref_read, kit_read in zip(ref_reads, kit_reads, strict=True):
            samples.setdefault((ref_read.name, "reference"), []).extend(
                time_read(reference, ref_read, sizes.search_repeats)
            )
            samples.setdefault((kit_read.name, "kit"), []).extend(
                time_read(kit, kit_read, sizes.search_repeats)
            )
    for read in kit_reads:
        ref = sorted(samples[(read.name, "reference")])
        ours = sorted(samples[(read.name, "kit")])
        row: dict[str, Any] = {
            "workload": read.name,
            "runs": min(ref_runs, kit_runs),
            "reference_p50_ms": round(statistics.median(ref), 2),
            "kit_p50_ms": round(statistics.median(ours), 2),
            "reference_p95_ms": round(ref[int(0.95 * (len(ref) - 1))], 2),
            "kit_p95_ms": round(ours[int(0.95 * (len(ours) - 1))], 2),
        }
        row["kit_speedup_p50"] = ratio(row["reference_p50_ms"], row["kit_p50_ms"])
        report.search.append(row)
