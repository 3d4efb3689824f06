"""The kit's deployment against a default `mlflow server`, side by side, in one run.

One process brings up, on loopback:

- the kit's local stack (PostgreSQL, SeaweedFS, `mlops-platform serve`, nginx with basic
  auth), reached the way users reach it: through the proxy;
- a reference `mlflow server` started as MLflow's documentation starts it (its default
  workers, job execution on), on the same PostgreSQL cluster (a database of its own)
  and the same S3 store (a prefix of its own), reached directly.

Then it measures each workload on both, alternately (A B A B ...), and PostgreSQL
itself taking the same metric rows (the physical limit):

1. start to healthy, processes and resident memory;
2. `log_metric` and 100-metric `log_batch` from 1, 4 and 16 client processes;
3. `search_runs`, listing runs and metric history on a database of ``--runs`` runs
   (default 100,000) in each server's database: template runs logged through each
   server's API, replicated in SQL; the kit's database carries its index pack;
4. one artifact of ``--artifact-mb`` (default 1024) up and down through each server
   and straight to the store.

It prints a table of medians with the ratios kit/reference and kit/limit and writes
the same figures as JSON to a file (``--output FILE``); with ``--json`` stdout carries
them as one object, ``{"ok": true, ...}``, like every `--json` of the CLI (the table
then goes to stderr). ``--quick`` is the same harness with small sizes (a minute or
two); CI runs it to keep the harness working.

    make bench                                  # the full run, under 15 minutes
    mlops-platform bench --quick --output out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from benchmarks import indexes as index_bench
from benchmarks.common import Stack, throwaway_stack
from benchmarks.throughput import (
    Target,
    client,
    measure,
    raw_postgres,
    reference_tmp,
    start_reference,
)
from mlops_platform import indexes, s3
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import terminate


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


# -- 1. start-up and memory -------------------------------------------------------------


def tree_memory(pid: int) -> dict[str, float]:
    """Processes, summed RSS and summed PSS (shared pages counted once) of a process tree.

    RSS sums count PostgreSQL's shared buffers once per backend; PSS is the honest total.
    """
    root = psutil.Process(pid)
    procs, rss, pss = 0, 0, 0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            procs, rss, pss = procs + 1, rss + info.rss, pss + getattr(info, "pss", info.rss)
    return {"processes": procs, "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)}


def reference_memory(reference_pid: int) -> dict[str, Any]:
    return {"reference server": tree_memory(reference_pid)}


def kit_memory(stack: Stack) -> dict[str, Any]:
    """Every service of the kit's stack (measured once the reference server is gone, so
    PostgreSQL carries no backends of the reference's)."""
    services = {s["name"]: s for s in stack.status()["services"] if s.get("pid")}
    per = {name: tree_memory(s["pid"]) for name, s in services.items()}
    total = {
        k: round(sum(m[k] for m in per.values()), 1) for k in ("processes", "rss_mb", "pss_mb")
    }
    return {"kit stack": total, **{f"kit {name}": m for name, m in per.items()}}


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


# -- 4. artifacts -----------------------------------------------------------------------


KIT = "kit (through the proxy)"
REFERENCE = "reference server"
STORE = "object store directly"
Seconds = dict[tuple[str, str], list[float]]


@dataclass
class Transfers:
    """What the artifact rounds share: each server's client and run, the store, the sizes,
    and the seconds measured so far, by (who, what)."""

    clients: dict[str, Any]
    runs: dict[str, str]
    store: Any
    sizes: Sizes
    seconds: Seconds = field(default_factory=dict)


def artifacts(stack: Stack, kit: Target, reference: Target, sizes: Sizes, report: Report) -> None:
    import mlflow

    settings = stack.settings
    work = stack.root / "artifacts-bench"
    work.mkdir()
    source = work / "payload.bin"
    with open(source, "wb") as out:
        for _ in range(sizes.artifact_mb):
            out.write(os.urandom(1 << 20))
    assert kit.auth is not None
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = kit.auth
    clients = {KIT: mlflow.MlflowClient(kit.url), REFERENCE: mlflow.MlflowClient(reference.url)}
    runs = {name: c.create_run("0").info.run_id for name, c in clients.items()}
    bench = Transfers(clients, runs, s3.client(settings, timeout=600), sizes)
    upload_and_download(bench, settings, source, work)
    # One streamed GET each of the artifact: time to the first byte, and the most the
    # server's temporary folder held meanwhile (MLflow's own view copies the whole object
    # there before it sends a byte).
    temps = {KIT: settings.state_dir / "tmp", REFERENCE: reference_tmp(stack)}
    targets = {KIT: kit, REFERENCE: reference}
    first_byte, peak_tmp = streamed_gets(bench, targets, temps, settings.s3_bucket)
    shutil.rmtree(work)
    report_streamed(report, bench, first_byte, peak_tmp)
    report_transfers(report, bench)


def timed(seconds: Seconds, key: tuple[str, str], action: Any, *args: Any) -> None:
    start = time.perf_counter()
    action(*args)
    seconds.setdefault(key, []).append(time.perf_counter() - start)


def upload_and_download(
    bench: Transfers, settings: PlatformSettings, source: Path, work: Path
) -> None:
    """Rounds of one upload and one download through each server and straight to the store."""
    clients, runs, store, sizes, seconds = (
        bench.clients, bench.runs, bench.store, bench.sizes, bench.seconds
    )  # fmt: skip
    for round_no in range(max(2, sizes.rounds - 1)):
        log(f"artifacts: round {round_no + 1}")
        for name, c in clients.items():
            down = work / "down"
            timed(seconds, (name, "upload"), c.log_artifact, runs[name], str(source),
                  f"r{round_no}")  # fmt: skip
            down.mkdir()
            timed(seconds, (name, "download"), c.download_artifacts, runs[name],
                  f"r{round_no}/payload.bin", str(down))  # fmt: skip
            shutil.rmtree(down)
        key = f"bench/{round_no}/payload.bin"
        timed(seconds, (STORE, "upload"), store.upload_file, str(source),
              settings.s3_bucket, key)  # fmt: skip
        timed(seconds, (STORE, "download"), store.download_file, settings.s3_bucket,
              key, str(work / "direct.bin"))  # fmt: skip
        (work / "direct.bin").unlink()


def streamed_gets(
    bench: Transfers, targets: dict[str, Target], temps: dict[str, Path], bucket: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Rounds of one streamed GET through each server and one straight from the store:
    (seconds to the first byte, peak MB in each server's temporary folder)."""
    clients, runs, store, seconds = bench.clients, bench.runs, bench.store, bench.seconds
    first_byte: dict[str, list[float]] = {}
    peak_tmp: dict[str, float] = {}
    # The store's own rate in the same run and the same way: one GetObject, read as the
    # GETs through the servers are (64 KB, then 1 MB pieces), into nothing.
    store_key = "bench/0/payload.bin"
    for _round in range(max(2, bench.sizes.rounds - 1)):
        for name, c in clients.items():
            uri = c.get_run(runs[name]).info.artifact_uri.removeprefix("mlflow-artifacts:")
            url = f"{targets[name].url}/api/2.0/mlflow-artifacts/artifacts{uri}/r0/payload.bin"
            ttfb, total, peak = streamed_get(url, targets[name].auth, temps[name])
            first_byte.setdefault(name, []).append(ttfb)
            seconds.setdefault((name, "streamed GET"), []).append(total)
            peak_tmp[name] = max(peak_tmp.get(name, 0.0), peak)
        ttfb, total = direct_get(store, bucket, store_key)
        first_byte.setdefault(STORE_GET, []).append(ttfb)
        seconds.setdefault((STORE_GET, "streamed GET"), []).append(total)
        peak_tmp[STORE_GET] = 0.0
    return first_byte, peak_tmp


def report_streamed(
    report: Report, bench: Transfers, first_byte: dict[str, list[float]], peak_tmp: dict[str, float]
) -> None:
    sizes, clients, seconds = bench.sizes, list(bench.clients), bench.seconds
    store_rate = sizes.artifact_mb / statistics.median(seconds[(STORE_GET, "streamed GET")])
    for name in (*clients, STORE_GET):
        rate = sizes.artifact_mb / statistics.median(seconds[(name, "streamed GET")])
        report.artifacts_streamed[name] = {
            "first_byte_s": round(statistics.median(first_byte[name]), 3),
            "mb_s": round(rate, 1),
            "fraction_of_store": ratio(rate, store_rate),
            "peak_server_tmp_mb": round(peak_tmp[name], 1),
        }


def report_transfers(report: Report, bench: Transfers) -> None:
    sizes, clients, seconds = bench.sizes, list(bench.clients), bench.seconds
    for direction in ("upload", "download"):
        rates = {
            name: round(sizes.artifact_mb / statistics.median(seconds[(name, direction)]), 1)
            for name in (*clients, STORE)
        }
        report.artifacts.append(
            {
                "direction": direction,
                "size_mb": sizes.artifact_mb,
                "kit_mb_s": rates[KIT],
                "reference_mb_s": rates[REFERENCE],
                "store_direct_mb_s": rates[STORE],
                "kit_vs_reference": ratio(rates[KIT], rates[REFERENCE]),
                "kit_fraction_of_store": ratio(rates[KIT], rates[STORE]),
            }
        )


def dir_mb(folder: Path) -> float:
    """Disk held by the files under ``folder`` (allocated blocks), in MB."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


STORE_GET = "object store directly (one GetObject)"
FIRST_READ = 64 * 1024
NEXT_READS = 1024 * 1024


def read_through(pieces: Any, start: float) -> tuple[float, float]:
    """Read a body: one piece of at most 64 KB (the first byte), then 1 MB pieces, as a
    client that saves a file does. (seconds to the first piece, seconds to the last)."""
    next(pieces(FIRST_READ), b"")
    ttfb = time.perf_counter() - start
    for _ in pieces(NEXT_READS):
        pass
    return ttfb, time.perf_counter() - start


def direct_get(store: Any, bucket: str, key: str) -> tuple[float, float]:
    """One GetObject straight from the store: (first byte, last byte) in seconds."""
    start = time.perf_counter()
    body = store.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return read_through(body.iter_chunks, start)
    finally:
        body.close()


def streamed_get(url: str, auth: tuple[str, str] | None, tmp: Path) -> tuple[float, float, float]:
    """(seconds to the first byte, seconds to the last, peak MB in ``tmp`` meanwhile)."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], dir_mb(tmp))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        with requests.get(url, auth=auth, stream=True, timeout=600) as response:
            response.raise_for_status()
            # The first piece of at most 64 KB arrives as soon as the server sends one,
            # whichever framing it uses; then 1 MB reads. Both from one reader of the
            # decoded body: reading the raw socket first would desync a chunked response.
            raw = response.raw

            def pieces(size: int) -> Any:
                return raw.stream(size, decode_content=True)

            ttfb, total = read_through(pieces, start)
        return ttfb, total, peak[0]
    finally:
        done.set()
        sampler.join()


# -- the run ----------------------------------------------------------------------------


def run(sizes: Sizes, *, skip: set[str], values: dict[str, str] | None = None) -> Report:
    report = Report(
        sizes=asdict(sizes),
        settings=dict(values or {}),
        machine={"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
    )
    started = time.monotonic()
    with throwaway_stack(**(values or {})) as stack:
        log("starting the kit's stack")
        t0 = time.monotonic()
        stack.cli("up")
        report.startup["kit stack"] = {"seconds_to_healthy": round(time.monotonic() - t0, 1)}
        report.memory_at_start.update(kit_memory(stack))
        s = stack.settings
        kit = Target(
            "kit", s.resolved_public_url, (s.proxy_user, s.proxy_password.get_secret_value())
        )
        log("starting the reference mlflow server")
        ref_pid, reference, ref_start = start_reference(stack)
        report.startup["reference server"] = {"seconds_to_healthy": round(ref_start, 1)}
        report.memory_at_start.update(reference_memory(ref_pid))
        try:
            if "writes" not in skip:
                writes(stack, kit, reference, sizes, report)
            if "search" not in skip:
                search(stack, kit, reference, sizes, report)
            if "artifacts" not in skip:
                artifacts(stack, kit, reference, sizes, report)
            report.memory.update(reference_memory(ref_pid))
        finally:
            terminate(ref_pid)
        time.sleep(2)  # the reference's PostgreSQL backends exit
        report.memory.update(kit_memory(stack))
    report.seconds = round(time.monotonic() - started, 1)
    return report


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
            " and the same read straight from the store:",
            "",
            streamed_table(report.artifacts_streamed),
        ]
    return "\n".join(out)


class Parser(argparse.ArgumentParser):
    as_json = False  # --json given: a refusal is also the one JSON object, as in the CLI

    def error(self, message: str) -> Any:  # one line, exit 2, like the rest of the CLI
        line = f"{message} (see `{self.prog} --help`)"
        print(f"error: {line}", file=sys.stderr)
        if self.as_json:
            print(json.dumps({"ok": False, "error": line}, indent=2))
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="mlops-platform bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument(
        "--json", action="store_true", help='print the figures as one JSON object: {"ok": ...}'
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="also write the figures here as JSON"
    )
    parser.add_argument("--clients", help="client process counts, e.g. 1,4,16")
    parser.add_argument("--runs", type=int, help="runs in each database for the reads")
    parser.add_argument("--artifact-mb", type=int, help="size of the artifact")
    parser.add_argument("--rounds", type=int, help="A/B alternations")
    parser.add_argument("--skip", default="", help="comma list of: writes, search, artifacts")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the kit's stack for this run, e.g. server_workers=4 (repeatable)",
    )
    given = sys.argv[1:] if argv is None else argv
    parser.as_json = "--json" in (given[: given.index("--")] if "--" in given else given)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.clients:
        overrides["clients"] = tuple(int(c) for c in args.clients.split(","))
    for name in ("runs", "artifact_mb", "rounds"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    sizes = Sizes(**{**asdict(sizes), **overrides})
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - {"writes", "search", "artifacts"}
    if unknown:
        parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
    values = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set {item!r}: expected NAME=VALUE, e.g. server_workers=4")
        values[name.lower().removeprefix("mlops_")] = value
    report = run(sizes, skip=skip, values=values)
    print(render(report), file=sys.stderr if args.json else sys.stdout)
    figures = asdict(report)
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.output}")
    if args.json:
        print(json.dumps({"ok": True, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
