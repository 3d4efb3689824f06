"""4. Artifacts: one large artifact up and down through each server and straight from the
store, and one streamed GET of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Stack
from benchmarks.harness.base import Report, Sizes, log, ratio
from benchmarks.throughput import Target, reference_tmp
from mlops_platform import s3
from mlops_platform.settings import PlatformSettings

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
    # GETs through the servers are (64 KB, then 1 MB pieces), into nothing. Four rounds at
    # least: two GETs of the same path through the same nginx differed by 10 % in one run.
    store_key = "bench/0/payload.bin"
    for _round in range(max(4, bench.sizes.rounds + 1)):
        for name, c in clients.items():
            uri = c.get_run(runs[name]).info.artifact_uri.removeprefix("mlflow-artifacts:")
            urls = {
                name: f"{targets[name].url}/api/2.0/mlflow-artifacts/artifacts{uri}/r0/payload.bin",
                # the file as MLflow's UI downloads it (its artifact view's link)
                f"{name}{UI_ROUTE}": f"{targets[name].url}/get-artifact?path=r0/payload.bin"
                f"&run_uuid={runs[name]}",
            }
            for row, url in urls.items():
                ttfb, total, peak = streamed_get(url, targets[name].auth, temps[name])
                first_byte.setdefault(row, []).append(ttfb)
                seconds.setdefault((row, "streamed GET"), []).append(total)
                peak_tmp[row] = max(peak_tmp.get(row, 0.0), peak)
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
    for name in (*clients, *(f"{c}{UI_ROUTE}" for c in clients), STORE_GET):
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
UI_ROUTE = ", the UI's get-artifact"
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


@contextlib.contextmanager
def peak_mb(folder: Path, every: float = 0.05) -> Iterator[list[float]]:
    """The most ``folder`` held during the block, in MB (``[0]`` of what it yields),
    sampled every EVERY seconds."""
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], dir_mb(folder))
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def streamed_get(url: str, auth: tuple[str, str] | None, tmp: Path) -> tuple[float, float, float]:
    """(seconds to the first byte, seconds to the last, peak MB in ``tmp`` meanwhile)."""
    with peak_mb(tmp) as peak:
        start = time.perf_counter()
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
