"""The index pack, measured: EXPLAIN ANALYZE of the SQL MLflow emits, before and after.

1. Bring up a throwaway local stack (or use ``--env-file`` of a running one).
2. Log template runs through the real API (the proxy, the tracking server): params,
   tags, metric histories, as a training script does.
3. Replicate them in SQL to ``--runs`` runs (default 100,000) spread like a real
   server: one big experiment (50 %), ten medium ones (40 %), a hundred small ones.
4. Run each workload through MLflow's own ``SqlAlchemyStore`` (so the SQL is exactly
   what the server executes), capture every statement, and EXPLAIN ANALYZE it: with no
   extra index, with each candidate alone, and with the whole pack.
5. Print the database execution time and the shared buffers read per workload side by
   side, and the ratios (buffers are exact and do not depend on the machine's load).

    python -m benchmarks.indexes                 # 100k runs, ~5 minutes
    python -m benchmarks.indexes --runs 20000    # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event

from benchmarks.common import throwaway_stack
from mlops_platform import db, indexes
from mlops_platform.render.server import client_env
from mlops_platform.settings import PlatformSettings, load_settings

TEMPLATES = 40
MODELS = ("xgboost", "lightgbm", "resnet50", "bert-base", "logreg")
TEAMS = ("vision", "nlp", "tabular", "search", "ads")
STEPS = 10
REPEAT = 3


def log_templates(
    settings: PlatformSettings, *, tracking_uri: str | None = None
) -> tuple[int, list[int]]:
    """Template runs and the target experiments, created through the real API.

    ``tracking_uri`` defaults to the platform's public URL (the proxy).
    """
    import os

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    for key, value in client_env(settings).items():
        os.environ[key] = value
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no link per run
    client = MlflowClient(tracking_uri or client_env(settings)["MLFLOW_TRACKING_URI"])
    stamp = int(time.time())
    template_exp = client.create_experiment(f"templates-{stamp}")
    rng = random.Random(7)
    now = int(time.time() * 1000)
    for i in range(TEMPLATES):
        run = client.create_run(template_exp, run_name=f"template-{i}")
        params = [
            Param("model", MODELS[i % len(MODELS)]),
            Param("lr", str(round(10 ** rng.uniform(-4, -1), 6))),
            Param("batch_size", str(2 ** rng.randint(4, 9))),
            Param("optimizer", rng.choice(["adam", "sgd", "adamw"])),
            Param("seed", str(i)),
        ]
        tags = [RunTag("team", TEAMS[i % len(TEAMS)]), RunTag("stage", "sweep")]
        metrics = []
        for step in range(STEPS):
            metrics.append(Metric("loss", 1.0 / (step + 1) + rng.random() * 0.1, now + step, step))
            metrics.append(Metric("accuracy", rng.uniform(0.5, 0.99), now + step, step))
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run.info.run_id)
    experiments = [client.create_experiment(f"big-{stamp}")]
    experiments += [client.create_experiment(f"medium-{stamp}-{i}") for i in range(10)]
    experiments += [client.create_experiment(f"small-{stamp}-{i}") for i in range(100)]
    return int(template_exp), [int(e) for e in experiments]


def replicate(
    settings: PlatformSettings, template_exp: int, experiments: list[int], n: int
) -> None:
    """Copy the template runs (with their params, tags, metrics) to ``n`` runs in SQL."""
    big, medium, small = experiments[0], experiments[1:11], experiments[11:]
    engine = db.make_engine(settings)
    sql = [
        # Templates in their logged order (template-0, -1, ...), not by their random
        # run_uuid: two databases populated this way get the same runs in each experiment.
        "CREATE TEMP TABLE tpl AS SELECT row_number() OVER (ORDER BY length(name), name) - 1 "
        "AS i, run_uuid FROM runs WHERE experiment_id = :tpl",
        "CREATE TEMP TABLE map AS SELECT gs AS n, md5(gs::text || clock_timestamp()::text) "
        "AS run_uuid, (SELECT run_uuid FROM tpl WHERE i = gs % :t) AS template_uuid, "
        "CASE WHEN gs <= :n * 0.5 THEN :big "
        "WHEN gs <= :n * 0.9 THEN (:medium)[1 + gs % 10] "
        "ELSE (:small)[1 + gs % 100] END AS experiment_id "
        "FROM generate_series(1, :n) gs",
        "CREATE INDEX ON map (template_uuid)",
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
        "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
        "artifact_uri, experiment_id, deleted_time) "
        "SELECT m.run_uuid, r.name || '-' || m.n, r.source_type, r.source_name, "
        "r.entry_point_name, r.user_id, r.status, r.start_time - m.n::bigint * 60000, "
        "r.end_time - m.n::bigint * 60000, r.source_version, "
        "CASE WHEN m.n % 50 = 0 THEN 'deleted' ELSE 'active' END, "
        "'s3://bench/' || m.run_uuid, m.experiment_id, NULL "
        "FROM map m JOIN runs r ON r.run_uuid = m.template_uuid",
        "INSERT INTO params (key, value, run_uuid) SELECT p.key, "
        "CASE WHEN p.key = 'seed' THEN m.n::text ELSE p.value END, m.run_uuid "
        "FROM map m JOIN params p ON p.run_uuid = m.template_uuid",
        "INSERT INTO tags (key, value, run_uuid) SELECT t.key, "
        "CASE WHEN t.key = 'mlflow.runName' THEN t.value || '-' || m.n ELSE t.value END, "
        "m.run_uuid FROM map m JOIN tags t ON t.run_uuid = m.template_uuid",
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        # A spread that is a function of the row (hashtext), not random(): the same values
        # in every database populated this way.
        "SELECT x.key, x.value * (0.9 + 0.2 * (hashtext(m.n || '/' || x.key || '/' || x.step) "
        "& 65535)::float8 / 65535), x.timestamp, m.run_uuid, x.step, "
        "x.is_nan FROM map m JOIN metrics x ON x.run_uuid = m.template_uuid",
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
        "SELECT DISTINCT ON (x.run_uuid, x.key) x.key, x.value, x.timestamp, x.step, x.is_nan, "
        "x.run_uuid FROM metrics x JOIN map m ON m.run_uuid = x.run_uuid "
        "ORDER BY x.run_uuid, x.key, x.step DESC",
    ]
    values = {"tpl": template_exp, "t": TEMPLATES, "n": n, "big": big}
    with engine.begin() as conn:
        for statement in sql:
            start = time.monotonic()
            text = statement.replace(":medium", "ARRAY" + json.dumps(medium)).replace(
                ":small", "ARRAY" + json.dumps(small)
            )
            params = {k: v for k, v in values.items() if f":{k}" in text}
            result = conn.execute(sqlalchemy.text(text), params)
            print(
                f"  {statement[:60]}... {result.rowcount} rows, {time.monotonic() - start:.1f}s",
                file=sys.stderr,
            )
    engine.dispose()


@dataclass
class Workload:
    name: str
    run: Callable[[Any], Any]


def workloads(experiments: list[int], sample_run: str, run_name: str) -> list[Workload]:
    big, medium, small = str(experiments[0]), str(experiments[1]), str(experiments[11])
    out: list[Workload] = []
    for label, exp in (("small exp", small), ("medium exp", medium), ("big exp", big)):
        out += [
            Workload(f"list runs, {label}", lambda s, e=exp: s.search_runs([e], "", 1, 100)),
            # The UI's run table and the harness's listing: MLflow orders by a nulls-last
            # CASE on start_time, which only mlops_runs_exp_stage_order_start serves.
            Workload(
                f"list runs by start time, {label}",
                lambda s, e=exp: s.search_runs(
                    [e], "", 1, 100, order_by=["attributes.start_time DESC"]
                ),
            ),
            Workload(
                f"params.model filter, {label}",
                lambda s, e=exp: s.search_runs([e], "params.model = 'bert-base'", 1, 100),
            ),
            Workload(
                f"tags.team filter, {label}",
                lambda s, e=exp: s.search_runs([e], "tags.team = 'nlp'", 1, 100),
            ),
            Workload(
                f"metrics.accuracy > 0.95, {label}",
                lambda s, e=exp: s.search_runs([e], "metrics.accuracy > 0.95", 1, 100),
            ),
            Workload(
                f"order by metric, {label}",
                lambda s, e=exp: s.search_runs([e], "", 1, 100, order_by=["metrics.accuracy DESC"]),
            ),
        ]
    out.append(
        Workload(
            "tags.mlflow.runName = one run, big exp",
            lambda s: s.search_runs([big], f"tags.mlflow.runName = '{run_name}'", 1, 10),
        )
    )
    out.append(
        Workload(
            "params.seed = one run, all exps",
            lambda s: s.search_runs([str(e) for e in experiments], "params.seed = '12345'", 1, 10),
        )
    )
    out.append(Workload("metric history", lambda s: s.get_metric_history(sample_run, "loss")))
    return out


@contextlib.contextmanager
def captured(engine: sqlalchemy.Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def listen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listen)


@dataclass(frozen=True)
class Measured:
    ms: float  # database execution time of every SELECT, median of REPEAT
    buffers: int  # shared buffers hit or read by them (the last repeat: all cached)


def measure(store: Any, work: Workload) -> Measured:
    """Execution time and shared buffers of every SELECT the workload runs."""
    with captured(store.engine) as statements:
        work.run(store)
    totals = []
    buffers = 0
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for _ in range(REPEAT):
            total = 0.0
            buffers = 0
            for statement, parameters in statements:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                total += float(plan[0]["Execution Time"])
                top = plan[0]["Plan"]  # a node's buffers include its children's
                buffers += int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])
            totals.append(total)
        raw.rollback()
    finally:
        raw.close()
    return Measured(statistics.median(totals), buffers)


def run_all(store: Any, loads: list[Workload]) -> dict[str, Measured]:
    return {w.name: measure(store, w) for w in loads}


def configure(settings: PlatformSettings, specs: tuple[indexes.IndexSpec, ...]) -> None:
    everything = indexes.PACK + indexes.CANDIDATES_REJECTED
    indexes.drop_pack(settings, specs=everything)
    if specs:
        indexes.apply_pack(settings, specs=specs)
    indexes.analyze(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs to replicate to")
    parser.add_argument("--env-file", type=Path, help="use this running stack instead")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="also write the results here"
    )
    args = parser.parse_args(argv)
    if args.env_file:
        return bench(load_settings(args.env_file), args)
    with throwaway_stack(server_workers="1") as stack:
        print("starting a throwaway stack", file=sys.stderr)
        stack.cli("up")
        return bench(stack.settings, args)


@dataclass
class Populated:
    experiments: list[int]
    sample_run: str
    run_name: str
    total_runs: int


def populate(
    settings: PlatformSettings, runs: int, *, tracking_uri: str | None = None
) -> Populated:
    """Template runs through the server's API (default: the proxy), replicated in SQL."""
    start = time.monotonic()
    template_exp, experiments = log_templates(settings, tracking_uri=tracking_uri)
    print(f"logged {TEMPLATES} template runs through the API", file=sys.stderr)
    replicate(settings, template_exp, experiments, runs)
    print(f"replicated to {runs} runs in {time.monotonic() - start:.0f}s", file=sys.stderr)
    engine = db.make_engine(settings)
    with engine.connect() as conn:
        sample = conn.execute(
            sqlalchemy.text("SELECT run_uuid FROM runs WHERE experiment_id = :e LIMIT 1"),
            {"e": experiments[0]},
        ).scalar()
        total_runs = conn.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar()
        run_name = conn.execute(
            sqlalchemy.text(
                "SELECT t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                "WHERE r.experiment_id = :e AND t.key = 'mlflow.runName' LIMIT 1 OFFSET 777"
            ),
            {"e": experiments[0]},
        ).scalar()
    engine.dispose()
    return Populated(experiments, str(sample), str(run_name), int(total_runs or 0))


def bench(settings: PlatformSettings, args: argparse.Namespace) -> int:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    data = populate(settings, args.runs)
    experiments, total_runs = data.experiments, data.total_runs
    store = SqlAlchemyStore(settings.database_url(with_password=True), "s3://bench/artifacts")
    loads = workloads(experiments, data.sample_run, data.run_name)
    configs: dict[str, tuple[indexes.IndexSpec, ...]] = {"none": ()}
    for spec in indexes.PACK + indexes.CANDIDATES_REJECTED:
        configs[spec.name] = (spec,)
    configs["pack"] = indexes.PACK
    results: dict[str, dict[str, float]] = {}
    buffers: dict[str, dict[str, float]] = {}
    for name, specs in configs.items():
        print(f"measuring with: {name}", file=sys.stderr)
        configure(settings, specs)
        measured = run_all(store, loads)
        results[name] = {w: m.ms for w, m in measured.items()}
        buffers[name] = {w: float(m.buffers) for w, m in measured.items()}
    configure(settings, ())
    names = [w.name for w in loads]
    print_table(
        results,
        names,
        f"EXPLAIN ANALYZE execution time, ms (median of {REPEAT}), {total_runs} runs",
        "{:.2f}",
    )
    print_table(buffers, names, f"shared buffers hit or read, {total_runs} runs (exact)", "{:.0f}")
    if args.output:
        args.output.write_text(
            json.dumps({"runs": total_runs, "results": results, "buffers": buffers}, indent=2)
        )
    return 0


def print_table(
    results: dict[str, dict[str, float]], names: list[str], title: str, fmt: str
) -> None:
    configs = [c for c in results if c != "none"]
    short = {c: c.removeprefix("mlops_") for c in configs}
    print(f"\n{title}; ratio = without / with\n")
    header = ["workload", "no index"] + [short[c] for c in configs]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        base = results["none"][name]
        cells = [name, fmt.format(base)]
        for c in configs:
            value = results[c][name]
            ratio = base / value if value else float("inf")
            cells.append(f"{fmt.format(value)} ({ratio:.1f}x)")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
