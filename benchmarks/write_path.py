"""Metric write path: MLflow's store against the kit's fast store, side by side.

`python -m benchmarks.write_path [--seconds 10] [--rounds 3] [--workers 2]
[--clients 1 4] [--output out.json]`

One throwaway local stack (PostgreSQL, SeaweedFS); two databases in its cluster; two
tracking servers started with the kit's own argv (render.server.server_argv) that
differ only in MLOPS_DB_FAST_METRICS: `stock` serves postgresql+psycopg://, `fast`
serves mlops-postgresql:// (mlops_platform.fast_store). Both run with the same
workers, pool and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, straight over loopback
(no proxy), and are measured in alternation, `rounds` times, medians reported:

- REST: N client processes, each with a run of its own, POST /runs/log-batch with 100
  metrics per request for `seconds`; metric rows/s summed over clients.
- direct: the same batches through the store objects in this process (no HTTP).
- raw PostgreSQL: the same 100-row transactions with plain psycopg, executemany and
  COPY, into a table of the metrics table's shape: the limit the fractions refer to.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Stack, throwaway_stack, wait_for_mlflow
from mlops_platform.render.server import server_argv, server_env
from mlops_platform.settings import PlatformSettings, inherited_environment
from mlops_platform.stack.base import StateFile, spawn, terminate
from mlops_platform.stack.postgres import Postgres
from tests.conftest import free_port

BATCH = 100
STORES = ("stock", "fast")


@dataclass
class Sample:
    rows: int
    seconds: float
    errors: int
    latencies_ms: list[float]


def log(message: str) -> None:
    print(f"[write_path] {message}", file=sys.stderr, flush=True)


def batch(step: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {"key": f"m{i}", "value": step * 0.5 + i, "timestamp": now, "step": step}
        for i in range(BATCH)
    ]


def rest_client(url: str, seconds: float, seed: int) -> Sample:
    """One client process: its own run, then log-batch requests until the time is up."""
    session = requests.Session()
    api = url + "/api/2.0/mlflow/runs"
    run_id = session.post(api + "/create", json={"experiment_id": "0"}, timeout=30).json()["run"][
        "info"
    ]["run_id"]
    rows = errors = step = 0
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step += 1
        t = time.perf_counter()
        response = session.post(
            api + "/log-batch", json={"run_id": run_id, "metrics": batch(step)}, timeout=60
        )
        latencies.append((time.perf_counter() - t) * 1000)
        if response.status_code == 200:
            rows += BATCH
        else:
            errors += 1
    return Sample(rows, time.perf_counter() - start, errors, latencies)


def raw_client(dsn: dict[str, Any], seconds: float, seed: int, copy: bool) -> Sample:
    """The same rows straight into PostgreSQL, one 100-row transaction per batch."""
    import psycopg

    run_uuid = f"{seed:032d}"
    with psycopg.connect(**dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE m (key varchar(250), value double precision, timestamp bigint,"
            " run_uuid varchar(32), step bigint, is_nan boolean NOT NULL,"
            " PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan))"
        )
        conn.commit()
        rows = step = 0
        latencies: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            step += 1
            t = time.perf_counter()
            data = [
                (m["key"], m["value"], m["timestamp"], run_uuid, step, False) for m in batch(step)
            ]
            with conn.cursor() as cur:
                if copy:
                    with cur.copy(
                        "COPY m (key, value, timestamp, run_uuid, step, is_nan) FROM STDIN"
                    ) as out:
                        for row in data:
                            out.write_row(row)
                else:
                    cur.executemany("INSERT INTO m VALUES (%s, %s, %s, %s, %s, %s)", data)
            conn.commit()
            latencies.append((time.perf_counter() - t) * 1000)
            rows += BATCH
        return Sample(rows, time.perf_counter() - start, 0, latencies)


def pooled(n: int, fn: Any, args: list[tuple[Any, ...]]) -> dict[str, float]:
    with multiprocessing.get_context("fork").Pool(n) as pool:
        samples: list[Sample] = pool.starmap(fn, args)
    seconds = max(s.seconds for s in samples)
    latencies = sorted(x for s in samples for x in s.latencies_ms)
    return {
        "rows_s": sum(s.rows for s in samples) / seconds,
        "errors": float(sum(s.errors for s in samples)),
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
    }


def direct(settings: PlatformSettings, fast: bool, seconds: float) -> dict[str, float]:
    """log_batch through the store object itself, in this process (no HTTP, no protobuf)."""
    from mlflow.entities import Metric

    from mlops_platform.fast_store import build_store, to_store_uri

    url = settings.database_url(with_password=True)
    store: Any
    if fast:
        store = build_store(to_store_uri(url), "/tmp/mlops-write-path-artifacts")
    else:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(url, "/tmp/mlops-write-path-artifacts")
    run_id = store.create_run("0", "bench", int(time.time() * 1000), [], None).info.run_id
    rows = step = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step += 1
        metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in batch(step)]
        store.log_batch(run_id, metrics, [], [])
        rows += BATCH
    return {"rows_s": rows / (time.perf_counter() - start)}


def start_server(stack: Stack, name: str, settings: PlatformSettings) -> tuple[int, str]:
    env = inherited_environment(keep_settings=False)
    env.update(server_env(settings))
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log_path = stack.root / f"server-{name}.log"
    pid = spawn(server_argv(settings), log_path=log_path, env=env)
    url = f"http://127.0.0.1:{settings.server_port}"

    wait_for_mlflow(url, what=f"the {name} mlflow server", log_path=log_path)
    return pid, url


def median(samples: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"args": vars(args), "rest": [], "direct": {}, "raw": {}}
    with throwaway_stack(server_workers=str(args.workers)) as stack:
        log("starting PostgreSQL and SeaweedFS (the local stack)")
        stack.cli("up")
        base = stack.settings
        pg = Postgres(base, StateFile.load(base.state_dir))
        per_store: dict[str, PlatformSettings] = {}
        for name in STORES:
            pg.superuser_sql(f'CREATE DATABASE wp_{name} OWNER "{base.db_user}"')
            per_store[name] = base.model_copy(
                update={
                    "db_name": f"wp_{name}",
                    "db_fast_metrics": name == "fast",
                    "server_port": free_port(),
                    "server_workers": args.workers,
                    "auth_enabled": False,  # the stores side by side, no permission engine
                }
            )
        servers: dict[str, tuple[int, str]] = {}
        try:
            for name in STORES:
                log(f"starting the {name} server ({args.workers} workers)")
                servers[name] = start_server(stack, name, per_store[name])
            dsn = {
                "host": "127.0.0.1",
                "port": base.db_port,
                "user": base.db_user,
                "password": base.db_password.get_secret_value(),
                "dbname": "wp_stock",
            }
            rest: dict[tuple[str, int], list[dict[str, float]]] = {}
            raw: dict[tuple[str, int], list[dict[str, float]]] = {}
            direct_samples: dict[str, list[dict[str, float]]] = {}
            for round_no in range(args.rounds):
                log(f"round {round_no + 1}/{args.rounds}")
                for n in args.clients:
                    for name in STORES:
                        url = servers[name][1]
                        sample = pooled(n, rest_client, [(url, args.seconds, i) for i in range(n)])
                        rest.setdefault((name, n), []).append(sample)
                        log(f"  REST {name:5} {n} clients: {sample['rows_s']:8.0f} rows/s")
                    for mode in ("executemany", "copy"):
                        work = [(dsn, args.seconds, i, mode == "copy") for i in range(n)]
                        raw.setdefault((mode, n), []).append(pooled(n, raw_client, work))
                for name in STORES:
                    sample = direct(per_store[name], name == "fast", args.seconds)
                    direct_samples.setdefault(name, []).append(sample)
        finally:
            for pid, _ in servers.values():
                terminate(pid)
        for n in args.clients:
            row: dict[str, Any] = {"clients": n}
            for name in STORES:
                row[f"{name}_rows_s"] = median(rest[(name, n)], "rows_s")
                row[f"{name}_p50_ms"] = median(rest[(name, n)], "p50_ms")
                row[f"{name}_errors"] = int(sum(s["errors"] for s in rest[(name, n)]))
            for mode in ("executemany", "copy"):
                row[f"raw_{mode}_rows_s"] = median(raw[(mode, n)], "rows_s")
            row["fast_vs_stock"] = round(row["fast_rows_s"] / row["stock_rows_s"], 2)
            for name in STORES:
                row[f"{name}_of_raw"] = round(
                    row[f"{name}_rows_s"] / row["raw_executemany_rows_s"], 3
                )
                row[f"{name}_of_copy"] = round(row[f"{name}_rows_s"] / row["raw_copy_rows_s"], 3)
            report["rest"].append(row)
        report["direct"] = {name: median(direct_samples[name], "rows_s") for name in STORES}
        report["direct"]["fast_vs_stock"] = round(
            report["direct"]["fast"] / report["direct"]["stock"], 2
        )
    return report


def render(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        f"log_batch of {BATCH} metrics, {a['workers']} server worker(s), {a['seconds']}s x "
        f"{a['rounds']} rounds (medians), metric rows/s",
        "",
        "| clients | stock | fast | fast/stock | raw PG executemany | raw PG COPY "
        "| stock of raw | fast of raw | stock p50 ms | fast p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rest"]:
        lines.append(
            f"| {r['clients']} | {r['stock_rows_s']:.0f} | {r['fast_rows_s']:.0f} "
            f"| {r['fast_vs_stock']:.2f}x | {r['raw_executemany_rows_s']:.0f} "
            f"| {r['raw_copy_rows_s']:.0f} | {r['stock_of_raw']:.1%} | {r['fast_of_raw']:.1%} "
            f"| {r['stock_p50_ms']:.1f} | {r['fast_p50_ms']:.1f} "
            f"| {r['stock_errors'] + r['fast_errors']} |"
        )
    d = report["direct"]
    lines += [
        "",
        f"direct store calls, 1 process: stock {d['stock']:.0f} rows/s, fast {d['fast']:.0f} "
        f"rows/s ({d['fast_vs_stock']:.2f}x)",
    ]
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like the rest of the CLI
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.write_path", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="client counts")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="also write the report as JSON here"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.workers < 1 or min(args.clients) < 1:
        parser.error("--seconds, --rounds, --workers and --clients must be positive")
    report = run(args)
    print(render(report))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
