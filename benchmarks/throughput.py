"""Write workloads and the reference server, for the harness (benchmarks/harness/).

A client process logs through the REST API for a bounded time; `raw_postgres` writes
the same metric rows straight into PostgreSQL (the physical limit); `start_reference`
starts `mlflow server` as MLflow's documentation does (its defaults, job execution on)
on the kit's PostgreSQL cluster (a database of its own) and S3 store (a prefix).
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Stack, wait_for_mlflow
from mlops_platform.render.server import server_env
from mlops_platform.settings import inherited_environment
from mlops_platform.stack.base import StateFile, spawn
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


def reference_tmp(stack: Stack) -> Path:
    return stack.root / "reference-tmp"


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
    # What `pip install mlflow` runs: uvicorn without its extras, i.e. the h11 parser and
    # asyncio's loop. The kit installs httptools and uvloop, which uvicorn would otherwise
    # pick for this server too (same interpreter); uvicorn reads its options from UVICORN_*.
    env["UVICORN_HTTP"] = "h11"
    env["UVICORN_LOOP"] = "asyncio"
    # Its own temporary folder, so the harness can see what a download writes there.
    tmp = reference_tmp(stack)
    tmp.mkdir(mode=0o700, exist_ok=True)
    env["TMPDIR"] = str(tmp)
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

    wait_for_mlflow(url, what="the reference mlflow server", log_path=log)
    return pid, Target("default mlflow", url, None), time.monotonic() - start
