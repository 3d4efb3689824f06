"""Write throughput: a default `mlflow server` and the kit's deployment, side by side.

One run brings up the kit's local stack, then a reference `mlflow server` with MLflow's
defaults (4 workers, job execution on) on the same PostgreSQL cluster (its own
database) and the same S3 store (its own prefix). Each workload is measured on both,
alternately (A B A B ...), for a bounded time, from several client processes; the
physical limit is PostgreSQL taking the same metric rows directly. Loopback only.

    make bench-throughput        # or: python -m benchmarks.throughput --clients 1,4
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import psutil
import requests

from benchmarks.common import Stack, throwaway_stack
from mlops_platform.render.server import server_env
from mlops_platform.settings import inherited_environment
from mlops_platform.stack.base import StateFile, spawn, terminate, tree_rss_mb, wait_until
from mlops_platform.stack.postgres import Postgres
from tests.conftest import free_port

BATCH = 100


@dataclass
class Target:
    name: str
    url: str
    auth: tuple[str, str] | None


@dataclass
class Sample:
    requests: int
    rows: int
    seconds: float
    errors: int
    latencies_ms: list[float] = field(default_factory=list)


def client(target: Target, kind: str, seconds: float, seed: int) -> Sample:
    """One client process: a run of its own, then requests until the time is up."""
    session = requests.Session()
    session.auth = target.auth
    api = target.url + "/api/2.0/mlflow/runs"
    run = session.post(api + "/create", json={"experiment_id": "0"}, timeout=30).json()
    run_id = run["run"]["info"]["run_id"]
    latencies: list[float] = []
    errors = rows = step = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        step += 1
        if kind == "log_metric":
            body: dict[str, Any] = {
                "run_id": run_id,
                "key": f"m{seed}",
                "value": step,
                "timestamp": 0,
                "step": step,
            }
            path, count = "/log-metric", 1
        else:
            body = {
                "run_id": run_id,
                "metrics": [
                    {"key": f"m{i}", "value": step, "timestamp": 0, "step": step}
                    for i in range(BATCH)
                ],
            }
            path, count = "/log-batch", BATCH
        t = time.perf_counter()
        response = session.post(api + path, json=body, timeout=30)
        latencies.append((time.perf_counter() - t) * 1000)
        if response.status_code == 200:
            rows += count
        else:
            errors += 1
    return Sample(len(latencies), rows, time.perf_counter() - start, errors, latencies)


def raw_postgres(dsn: dict[str, Any], seconds: float, seed: int) -> Sample:
    """The same metric rows straight into PostgreSQL, 100-row transactions."""
    import psycopg

    with psycopg.connect(**dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE m (key varchar(250), value double precision, timestamp bigint,"
            " run_uuid varchar(32), step bigint, is_nan boolean,"
            " PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan))"
        )
        conn.commit()
        rows = step = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            step += 1
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO m VALUES (%s, %s, 0, %s, %s, false)",
                    [(f"m{i}", float(step), f"run{seed:028d}", step) for i in range(BATCH)],
                )
            conn.commit()
            rows += BATCH
        return Sample(step, rows, time.perf_counter() - start, 0)


def measure(pool_size: int, fn: Any, args: list[tuple[Any, ...]]) -> dict[str, float]:
    with multiprocessing.get_context("fork").Pool(pool_size) as pool:
        samples: list[Sample] = pool.starmap(fn, args)
    seconds = max(s.seconds for s in samples)
    latencies = sorted(x for s in samples for x in s.latencies_ms)
    out = {
        "req_s": sum(s.requests for s in samples) / seconds,
        "rows_s": sum(s.rows for s in samples) / seconds,
        "errors": float(sum(s.errors for s in samples)),
    }
    if latencies:
        out["p50_ms"] = statistics.median(latencies)
        out["p95_ms"] = latencies[int(0.95 * (len(latencies) - 1))]
    return out


def start_reference(stack: Stack) -> tuple[int, Target, float]:
    """`mlflow server` as its docs start it: defaults, on a database of its own."""
    settings = stack.settings
    Postgres(settings, StateFile.load(settings.state_dir)).superuser_sql(
        f'CREATE DATABASE reference OWNER "{settings.db_user}"'
    )
    port = free_port()
    env = inherited_environment(keep_settings=False)
    env.update(server_env(settings))
    env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", None)  # MLflow's default: on
    reference = settings.model_copy(update={"db_name": "reference"})
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        reference.database_url(),
        "--artifacts-destination",
        f"s3://{settings.s3_bucket}/reference",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    start = time.monotonic()
    log = stack.root / "reference.log"
    pid = spawn(argv, log_path=log, env=env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(
                url + "/api/2.0/mlflow/experiments/get?experiment_id=0", timeout=3
            ) as response:
                return int(response.status) == 200
        except OSError:
            return False

    wait_until(healthy, timeout=180, what="the reference mlflow server", log_path=log)
    return pid, Target("default mlflow", url, None), time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4", help="client process counts, e.g. 1,4,16")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="A/B alternations")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    with throwaway_stack() as stack:
        t0 = time.monotonic()
        stack.cli("up")
        kit_start = time.monotonic() - t0
        s = stack.settings
        kit = Target(
            "kit via nginx",
            s.resolved_public_url,
            (s.proxy_user, s.proxy_password.get_secret_value()),
        )
        ref_pid, reference, ref_start = start_reference(stack)
        try:
            kit_pid = next(x["pid"] for x in stack.status()["services"] if x["name"] == "tracking")
            memory = {reference.name: tree_rss_mb(ref_pid), kit.name: tree_rss_mb(kit_pid)}
            procs = {
                reference.name: len(psutil.Process(ref_pid).children(recursive=True)) + 1,
                kit.name: len(psutil.Process(kit_pid).children(recursive=True)) + 1,
            }
            dsn = {
                "host": "127.0.0.1",
                "port": s.db_port,
                "user": s.db_user,
                "password": s.db_password.get_secret_value(),
                "dbname": "reference",
            }
            results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
                for kind in ("log_metric", "log_batch"):
                    for n in counts:
                        for target in (reference, kit):
                            results.setdefault((kind, target.name, n), []).append(
                                measure(
                                    n, client, [(target, kind, args.seconds, i) for i in range(n)]
                                )
                            )
                for n in counts:
                    results.setdefault(("raw", "postgres", n), []).append(
                        measure(n, raw_postgres, [(dsn, args.seconds, i) for i in range(n)])
                    )
        finally:
            terminate(ref_pid)

    def median(key: tuple[str, str, int], field_name: str) -> float:
        return statistics.median(r.get(field_name, 0.0) for r in results[key])

    print()
    print("server processes and memory (tracking server only)")
    print(
        f"  default mlflow: {procs[reference.name]} processes, "
        f"{memory[reference.name]:.0f} MB, healthy after {ref_start:.1f}s"
    )
    print(
        f"  kit           : {procs[kit.name]} processes, {memory[kit.name]:.0f} MB "
        f"(whole stack healthy after {kit_start:.1f}s)"
    )
    print()
    header = (
        f"{'workload':<11} {'clients':>7} {'default rows/s':>15} {'kit rows/s':>11} "
        f"{'kit/default':>11} {'default p50/p95 ms':>19} {'kit p50/p95 ms':>15} "
        f"{'raw PG rows/s':>14} {'kit % of raw':>12}"
    )
    print(header)
    for kind in ("log_metric", "log_batch"):
        for n in counts:
            ref_key, kit_key = (kind, reference.name, n), (kind, kit.name, n)
            a, b = median(ref_key, "rows_s"), median(kit_key, "rows_s")
            raw = median(("raw", "postgres", n), "rows_s")
            errors = sum(r["errors"] for r in results[kit_key] + results[ref_key])
            print(
                f"{kind:<11} {n:>7} {a:>15.0f} {b:>11.0f} {b / a if a else 0:>10.1f}x "
                f"{median(ref_key, 'p50_ms'):>9.1f}/{median(ref_key, 'p95_ms'):<9.1f}"
                f"{median(kit_key, 'p50_ms'):>7.1f}/{median(kit_key, 'p95_ms'):<7.1f} "
                f"{raw:>14.0f} {100 * b / raw if raw else 0:>11.1f}%"
                + (f"  ({errors:.0f} errors)" if errors else "")
            )
    print(f"\nmedians of {args.rounds} alternating rounds of {args.seconds:.0f}s each")


if __name__ == "__main__":
    main()
