"""What the kit's exporter (`mlops-platform metrics`) costs: a scrape of /metrics, each
background collection, and memory (the resident process's PSS, and with its collecting
child's, sampled over a window longer than the checks' interval), with an empty tracking
database and with many runs (default 100 000, inserted with one SQL statement), side by
side in one run.

Brings a throwaway stack up with MLOPS_MONITORING=true, on loopback. Not asserted.

    python -m benchmarks.metrics [--runs 100000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request

import psutil
import sqlalchemy

from benchmarks.common import Stack, throwaway_stack
from mlops_platform import db
from mlops_platform import metrics as exporter
from tests.conftest import free_port

INSERT_RUNS = """
INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,
                  status, start_time, end_time, source_version, lifecycle_stage,
                  artifact_uri, experiment_id)
SELECT md5('bench-' || i), 'bench-' || i, 'LOCAL', '', '', 'bench', 'FINISHED',
       1700000000000 + i, 1700000000500 + i, '', 'active',
       's3://bench/' || md5('bench-' || i), 0
FROM generate_series(1, :n) AS i
ON CONFLICT DO NOTHING
"""


def scrape_ms(url: str, scrapes: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(scrapes):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            size = len(response.read())
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], size


def pss_mb(pid: int) -> tuple[float, float]:
    """Proportional set size (a process's share of shared pages: what it adds to the
    machine), MB: of the process itself, and of its children (the collecting child)."""
    proc = psutil.Process(pid)
    own = proc.memory_full_info().pss
    children = 0
    for child in proc.children(recursive=True):
        try:
            children += child.memory_full_info().pss
        except psutil.Error:
            pass
    return own / 2**20, children / 2**20


def memory_over(pid: int, seconds: float) -> dict[str, float]:
    """PSS of the exporter and its children every 0.5 s for ``seconds`` (longer than the
    checks' interval, so one collection falls inside): means and peak."""
    own, tree = [], []
    busy = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        resident, children = pss_mb(pid)
        own.append(resident)
        tree.append(resident + children)
        busy += children > 0
        time.sleep(0.5)
    return {
        "resident_pss_mb": statistics.mean(own),
        "pss_mean_mb": statistics.mean(tree),
        "pss_peak_mb": max(tree),
        "child_share": busy / len(tree),
    }


def collect_seconds(stack: Stack) -> dict[str, float]:
    out = {}
    for name, collect in exporter.GROUPS.items():
        start = time.perf_counter()
        collect(stack.settings)
        out[name] = time.perf_counter() - start
    return out


def measure(stack: Stack, label: str, scrapes: int, window: float) -> dict[str, object]:
    status = {s["name"]: s for s in stack.status()["services"]}
    url = status["metrics"]["url"]
    median, p95, size = scrape_ms(url, scrapes)
    return {
        "memory": memory_over(int(status["metrics"]["pid"]), window),
        "label": label,
        "scrape_median_ms": median,
        "scrape_p95_ms": p95,
        "body_bytes": size,
        "collect_s": collect_seconds(stack),
        "rss_mb": {
            n: status[n]["rss_mb"]
            for n in ("metrics", "postgres-exporter", "nginx-exporter", "prometheus")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument(
        "--window",
        type=float,
        default=70.0,
        help="seconds over which the exporter's memory is sampled (over one checks interval)",
    )
    opts = parser.parse_args()
    rows = []
    with throwaway_stack(monitoring="true", monitoring_port=str(free_port())) as stack:
        stack.cli("up")
        rows.append(measure(stack, "0 runs", opts.scrapes, opts.window))
        engine = db.make_engine(stack.settings)
        start = time.monotonic()
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(INSERT_RUNS), {"n": opts.runs})
            conn.execute(sqlalchemy.text("ANALYZE runs"))
        engine.dispose()
        print(f"inserted {opts.runs} runs in {time.monotonic() - start:.1f}s")
        rows.append(measure(stack, f"{opts.runs} runs", opts.scrapes, opts.window))
    for row in rows:
        collect = ", ".join(f"{k} {v:.2f}s" for k, v in row["collect_s"].items())  # type: ignore[attr-defined]
        print(
            f"{row['label']:>12}: scrape median {row['scrape_median_ms']:.2f} ms, "
            f"p95 {row['scrape_p95_ms']:.2f} ms, {row['body_bytes']} bytes; "
            f"collections: {collect}; RSS MB {row['rss_mb']}; "
            f"exporter PSS MB: resident {row['memory']['resident_pss_mb']:.1f}, "  # type: ignore[index]
            f"with its collecting child mean {row['memory']['pss_mean_mb']:.1f} "  # type: ignore[index]
            f"(child alive {row['memory']['child_share']:.0%} of the time), "  # type: ignore[index]
            f"peak {row['memory']['pss_peak_mb']:.1f}"  # type: ignore[index]
        )


if __name__ == "__main__":
    main()
