"""The fast metrics store (mlops_platform.fast_store) is MLflow's store, only faster.

Differential test on the real PostgreSQL of the session stack: one database is
migrated and seeded (experiment, runs, a logged model) by MLflow's own store, then
cloned twice (CREATE DATABASE … TEMPLATE), so both copies hold the very same runs.
The same seeded random sequence of calls — batches with duplicates inside and across
calls, NaN, ±inf, -0.0, negative steps, equal timestamps, model metrics, params and
tags, invalid inputs, deleted and finished runs — goes to MLflow's SqlAlchemyStore on
one copy and to FastSqlAlchemyStore on the other. Every call must end the same way
(same exception class, error code and message) and afterwards every table must be
equal row by row, as text (so -0 and 0 differ).

Then a real `mlflow server` started with the kit's argv (MLOPS_DB_FAST_METRICS=true)
must serve its handlers from the plugin store: its connections carry the store's
application_name, the rows land, and the model registry still answers.

One module, because its tests share one module-scoped set of databases (`databases`:
migrated, seeded and cloned on the session stack's PostgreSQL); split, each part would
build its own.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlops_platform.fast_store import APPLICATION_NAME, build_store, to_store_uri
from mlops_platform.fast_store.store import (
    PING_IDLE_SECONDS,
    PREPARED_WRITES_ENV,
    FastSqlAlchemyStore,
)
from mlops_platform.render.server import server_argv, server_env
from mlops_platform.settings import PlatformSettings, inherited_environment
from mlops_platform.stack.base import spawn, terminate, wait_until
from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.support.mlflow_stores import dispose

pytestmark = pytest.mark.integration

SEED = 20261124
OPERATIONS = 400
RUNS = 4
# The concurrent test: writers on the same runs and keys, each round on fresh runs.
WRITERS = 8
ROUNDS = 4
RACE_RUNS_PER_ROUND = 2
RACE_KEYS = ["loss", "acc", "lr"]
KEYS = ["loss", "acc", "val/loss", "lr", "a.b-c_d", "k 1", "m5", "m6"]
TABLES = ["metrics", "latest_metrics", "params", "tags", "logged_model_metrics"]


@dataclass
class Databases:
    settings: PlatformSettings
    stock: SqlAlchemyStore
    fast: FastSqlAlchemyStore
    server_db: str
    run_ids: list[str]
    model_id: str
    experiment_id: str
    race_run_ids: list[str]
    template_db: str  # the migrated database the others were copied from


def _db_url(settings: PlatformSettings, name: str) -> str:
    return settings.model_copy(update={"db_name": name}).database_url(with_password=True)


def _copy_database(platform: Platform, template: str, name: str) -> None:
    """NAME, a new database with TEMPLATE's rows, owned by the platform's user."""
    owner = platform.settings.db_user
    platform.superuser_sql(f'CREATE DATABASE {name} TEMPLATE {template} OWNER "{owner}"')


@pytest.fixture(scope="module")
def databases(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    settings = platform.settings
    tag = secrets.token_hex(4)
    base, stock_db, fast_db, server_db = (f"fs_{n}_{tag}" for n in ("base", "stock", "fast", "srv"))
    owner = settings.db_user
    artifacts = str(tmp_path_factory.mktemp("fast-store-artifacts"))

    platform.superuser_sql(f'CREATE DATABASE {base} OWNER "{owner}"')
    created = [base]
    stores: list[SqlAlchemyStore] = []
    try:
        seed = SqlAlchemyStore(_db_url(settings, base), artifacts)  # migrates the fresh database
        experiment_id = seed.create_experiment("differential")
        run_ids = [
            seed.create_run(
                experiment_id, "tester", 1_700_000_000_000 + i, [], f"run-{i}"
            ).info.run_id
            for i in range(RUNS)
        ]
        model_id = seed.create_logged_model(experiment_id, name="model").model_id
        race_run_ids = [
            seed.create_run(experiment_id, "racer", 1_700_000_000_000, [], f"race-{i}").info.run_id
            for i in range(ROUNDS * RACE_RUNS_PER_ROUND)
        ]
        dispose(seed)
        for name in (stock_db, fast_db, server_db):
            _copy_database(platform, base, name)
            created.append(name)
        stock = SqlAlchemyStore(_db_url(settings, stock_db), artifacts)
        fast = build_store(to_store_uri(_db_url(settings, fast_db)), artifacts)
        stores += [stock, fast]
        assert type(fast) is FastSqlAlchemyStore
        yield Databases(
            settings, stock, fast, server_db, run_ids, model_id, experiment_id, race_run_ids, base
        )
    finally:
        for store in stores:
            dispose(store)
        for name in reversed(created):
            platform.superuser_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the random workload ---------------------------------------------------------------


def _value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.08:
        return float("nan")
    if roll < 0.12:
        return math.inf
    if roll < 0.16:
        return -math.inf
    if roll < 0.20:
        return rng.choice([0.0, -0.0])
    if roll < 0.30:
        return rng.randint(-3, 3)  # ints, and ties with the floats below
    if roll < 0.33:
        return rng.choice([2**60 + 1, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324])
    return rng.choice([0.5, 1.0, 2.0, -1.5]) if rng.random() < 0.4 else rng.uniform(-10, 10)


def _metric(rng: random.Random, model_id: str | None = None) -> Metric:
    return Metric(
        key=rng.choice(KEYS),
        value=_value(rng),
        timestamp=rng.choice([0, 1, 2, 1_700_000_000_000]),
        step=rng.choice([-3, -1, 0, 0, 1, 2, 3, 10]),
        model_id=model_id,
    )


def _bad_metric(rng: random.Random) -> Metric:
    kind = rng.randrange(9)
    good = _metric(rng)
    key: Any = good.key
    value: Any = good.value
    ts: Any = good.timestamp
    step: Any = good.step
    if kind == 0:
        key = "x" * 251  # too long
    elif kind == 1:
        key = "bad*key?"  # bad characters
    elif kind == 2:
        key = "../up"  # not a unique path
    elif kind == 3:
        value = "1.0"  # not numeric
    elif kind == 4:
        value = True  # bool is not a number for MLflow
    elif kind == 5:
        ts = -1
    elif kind == 6:
        step = "1"
    elif kind == 7:
        ts, step = 1.5, 2.0  # numbers, but not ints: MLflow's code handles them
    else:
        step = 2**63  # beyond bigint: the database refuses it
    metric = Metric.__new__(Metric)
    metric.__dict__.update(
        _key=key,
        _value=value,
        _timestamp=ts,
        _step=step,
        _model_id=None,
        _dataset_name=None,
        _dataset_digest=None,
        _run_id=None,
    )
    return metric


def workload(rng: random.Random, run_ids: list[str], model_id: str) -> list[tuple[str, tuple]]:
    ops: list[tuple[str, tuple]] = []
    history: list[Metric] = []
    tie_ts: dict[str, int] = {}
    for _ in range(OPERATIONS):
        run_id = rng.choice(run_ids)
        roll = rng.random()
        if roll < 0.12:  # ties on (step, timestamp, value) between NaN (stored as 0) and 0,
            # within one batch or against the stored latest value; step 11 beats the rest
            tie_ts[run_id] = tie_ts.get(run_id, 1_700_000_000_000) + 1
            first, second = rng.sample(
                [
                    Metric("loss", float("nan"), tie_ts[run_id], 11),
                    Metric("loss", rng.choice([0.0, -0.0, 0]), tie_ts[run_id], 11),
                ],
                2,
            )
            extra = [_metric(rng) for _ in range(rng.randrange(3))]
            mode = rng.randrange(3)
            if mode == 0:
                ops.append(("log_batch", (run_id, [first, second, *extra], [], [])))
            else:
                ops.append(("log_metric", (run_id, first)))
                if mode == 1:
                    ops.append(("log_metric", (run_id, second)))
                else:
                    ops.append(("log_batch", (run_id, [second, *extra], [], [])))
        elif roll < 0.55:  # a batch of metrics, with duplicates within and across batches
            batch: list[Metric] = []
            for _ in range(rng.choice([1, 2, 5, 20, 100, 150])):
                r = rng.random()
                if r < 0.15 and history:
                    batch.append(rng.choice(history))  # an earlier call's metric
                elif r < 0.25 and batch:
                    m = rng.choice(batch)  # the same object, or an equal new one
                    batch.append(
                        m if rng.random() < 0.5 else Metric(m.key, m.value, m.timestamp, m.step)
                    )
                else:
                    batch.append(_metric(rng))
            history.extend(rng.sample(batch, min(5, len(batch))))
            ops.append(("log_batch", (run_id, batch, [], [])))
        elif roll < 0.70:
            metric = rng.choice(history) if history and rng.random() < 0.3 else _metric(rng)
            ops.append(("log_metric", (run_id, metric)))
        elif roll < 0.76:  # params and tags alongside metrics (a changed param value fails)
            params = [Param(f"p{rng.randrange(4)}", str(rng.randrange(2)))]
            tags = [RunTag(f"t{rng.randrange(4)}", str(rng.random()))]
            batch = [_metric(rng) for _ in range(rng.choice([0, 3, 30]))]
            ops.append(("log_batch", (run_id, batch, params, tags)))
        elif roll < 0.80:  # metrics of a logged model (logged_model_metrics)
            batch = [_metric(rng, model_id if rng.random() < 0.5 else None) for _ in range(10)]
            ops.append(("log_batch", (run_id, batch, [], [])))
        elif roll < 0.82:
            ops.append(("log_metric", (run_id, _metric(rng, model_id))))
        elif roll < 0.90:  # invalid input, alone or amid valid metrics
            batch = [_metric(rng) for _ in range(rng.randrange(3))]
            batch.insert(rng.randrange(len(batch) + 1), _bad_metric(rng))
            if rng.random() < 0.5 and len(batch) == 1:
                ops.append(("log_metric", (run_id, batch[0])))
            else:
                ops.append(("log_batch", (run_id, batch, [], [])))
        elif roll < 0.92:
            ops.append(("log_batch", (run_id, [_metric(rng) for _ in range(1001)], [], [])))
        elif roll < 0.94:
            missing = rng.choice(["0" * 32, "not-a-run-id!"])
            ops.append(("log_batch", (missing, [_metric(rng)], [], [])))
        elif roll < 0.97:
            ops.append(("delete_run" if rng.random() < 0.5 else "restore_run", (run_id,)))
        else:
            ops.append(("update_run_info", (run_id, RunStatus.FINISHED, 1_800_000_000_000, None)))
    return ops


def outcome(store: SqlAlchemyStore, name: str, args: tuple) -> tuple[Any, ...] | None:
    try:
        getattr(store, name)(*args)
    except MlflowException as e:
        return (type(e).__name__, e.error_code, e.message)
    except Exception as e:  # noqa: BLE001 - any other exception must match too
        return (type(e).__name__, str(e))
    return None


def table_rows(store: SqlAlchemyStore, table: str) -> list[str]:
    with store.engine.connect() as conn:
        if table == "runs":  # deleted_time is a clock reading: compare whether it is set
            sql = (
                "SELECT (to_jsonb(r) - 'deleted_time' - 'artifact_uri'"
                " || jsonb_build_object('deleted', r.deleted_time IS NOT NULL))::text"
                " FROM runs r ORDER BY 1"
            )
        else:
            sql = f"SELECT t::text FROM {table} t ORDER BY 1"
        return [row[0] for row in conn.exec_driver_sql(sql)]


def test_fast_store_matches_mlflow_row_by_row(databases: Databases) -> None:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sqlalchemy.event.listen(databases.fast.engine, "before_cursor_execute", count)
    ops = workload(random.Random(SEED), databases.run_ids, databases.model_id)
    errors: dict[str, int] = {}
    fast_statements = 0
    for index, (name, args) in enumerate(ops):
        expected = outcome(databases.stock, name, args)
        statements.clear()
        got = outcome(databases.fast, name, args)
        assert got == expected, f"operation {index} {name}: stock {expected!r}, fast {got!r}"
        if expected is not None:
            errors[expected[2] if len(expected) > 2 else expected[1]] = 1
        if any("WITH run AS" in s for s in statements):
            fast_statements += 1
            plain = name == "log_batch" and not args[2] and not args[3]
            if plain and expected is None and all(m.model_id is None for m in args[1]):
                # set-based: one statement for the rows and latest_metrics, nothing else
                assert len(statements) == 1, statements
    sqlalchemy.event.remove(databases.fast.engine, "before_cursor_execute", count)

    for table in ["runs", *TABLES]:
        stock_rows = table_rows(databases.stock, table)
        fast_rows = table_rows(databases.fast, table)
        missing = sorted(set(stock_rows) - set(fast_rows))[:5]
        extra = sorted(set(fast_rows) - set(stock_rows))[:5]
        assert stock_rows == fast_rows, f"{table} differs: only stock {missing}, only fast {extra}"

    # The workload really exercised what it claims to (a test that cannot fail is a defect).
    with databases.stock.engine.connect() as conn:

        def one(sql: str) -> int:
            return int(conn.exec_driver_sql(sql).scalar() or 0)

        assert one("SELECT count(*) FROM metrics") > 3000
        assert one("SELECT count(*) FROM metrics WHERE is_nan") > 50
        assert one("SELECT count(*) FROM metrics WHERE value = 1.7976931348623157e308") > 20
        assert one("SELECT count(*) FROM metrics WHERE step < 0") > 100
        assert one("SELECT count(*) FROM latest_metrics WHERE is_nan AND step = 11") >= 1
        assert one("SELECT count(*) FROM latest_metrics WHERE NOT is_nan AND step = 11") >= 1
        assert one("SELECT count(*) FROM metrics WHERE value::text = '-0'") >= 1
        assert one("SELECT count(*) FROM logged_model_metrics") > 10
        assert one("SELECT count(*) FROM params") >= 1
    assert fast_statements > 150, fast_statements
    assert len(errors) >= 8, sorted(errors)
    assert any("deleted" in e for e in errors), sorted(errors)
    assert any("not found" in e for e in errors), sorted(errors)


def _history(store: SqlAlchemyStore, run_id: str, key: str, page: int | None) -> list[Any]:
    """Every page of the metric's history, as (key, repr(value), timestamp, step) and the
    page tokens (repr keeps -0.0 apart from 0.0 and NaN comparable)."""
    out: list[Any] = []
    token = None
    while True:
        got = store.get_metric_history(run_id, key, max_results=page, page_token=token)
        out.append([(m.key, repr(m.value), m.timestamp, m.step) for m in got])
        token = got.token
        out.append(token)
        if token is None:
            return out


def _up_to_ties(history: list[Any]) -> tuple[Any, ...]:
    """A history as MLflow defines its order. MLflow sorts by (timestamp, step, value);
    rows equal in all three (NaN is stored as 0, and -0.0 equals 0.0) come in whatever
    order the plan gives, and the two stores' plans may differ. Kept exact: each page's
    size, the page tokens, and the order of the sort keys; within equal keys, the points
    as a multiset."""
    pages, tokens = history[::2], history[1::2]
    points = [point for page in pages for point in page]

    def key(point: tuple[str, str, int, int]) -> tuple[int, int, float]:
        value = float(point[1])
        return point[2], point[3], 0.0 if value != value else value

    return [len(p) for p in pages], tokens, [key(p) for p in points], sorted(points)


def test_fast_store_reads_metric_history_as_mlflow_does(databases: Databases) -> None:
    """After the workload above both databases hold the same rows: every history, whole
    and paged, reads the same through both stores, the fast one without ORM objects."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sqlalchemy.event.listen(databases.fast.engine, "before_cursor_execute", record)
    points = 0
    for run_id in [*databases.run_ids, "0" * 32]:
        for key in [*KEYS, "never-logged"]:
            for page in (None, 1, 7, 1000):
                stock = _history(databases.stock, run_id, key, page)
                fast = _history(databases.fast, run_id, key, page)
                assert _up_to_ties(fast) == _up_to_ties(stock), (run_id, key, page)
                points += sum(len(p) for p in stock[::2]) if page is None else 0
    sqlalchemy.event.remove(databases.fast.engine, "before_cursor_execute", record)
    assert points > 3000  # the workload's rows, NaN, ±inf and -0 among them
    reads = [s for s in statements if "FROM metrics" in s]
    assert reads and not any("metrics.run_uuid AS" in s for s in reads), reads[:1]


def test_fast_store_fails_reads_and_writes_as_mlflow_does_once_the_database_is_gone(
    platform: Platform, databases: Databases, tmp_path: Path
) -> None:
    """The kit reads a history and writes metrics on pooled connections, not MLflow's
    session (the write as a prepared statement, through the driver): a database that
    went away still fails both with MLflow's error code."""
    name = f"fs_gone_{secrets.token_hex(4)}"
    _copy_database(platform, databases.template_db, name)
    url = _db_url(databases.settings, name)
    stores = [SqlAlchemyStore(url, str(tmp_path)), build_store(to_store_uri(url), str(tmp_path))]
    try:
        run_id = databases.run_ids[0]
        assert [list(s.get_metric_history(run_id, "loss")) for s in stores] == [[], []]
        for store in stores:
            store.log_metric(run_id, Metric("loss", 1.0, 1, 1))
        platform.superuser_sql(f"DROP DATABASE {name} WITH (FORCE)")
        codes = []
        for store in stores:
            with pytest.raises(MlflowException) as failed:
                store.get_metric_history(run_id, "loss")
            codes.append(failed.value.error_code)
            with pytest.raises(MlflowException) as failed:
                store.log_metric(run_id, Metric("loss", 2.0, 2, 2))
            codes.append(failed.value.error_code)
        assert codes == ["TEMPORARILY_UNAVAILABLE"] * 4
    finally:
        for store in stores:
            dispose(store)
        platform.superuser_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _drop_connections(platform: Platform, database: str) -> int:
    """Terminate the fast store's connections to ``database``; how many there were."""
    return int(
        platform.superuser_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND application_name = '{APPLICATION_NAME}'"
        ).strip()
    )


def test_fast_store_pings_only_a_connection_that_was_idle(
    platform: Platform, databases: Databases, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MLflow's engine pings on every checkout; the fast store's only after
    PING_IDLE_SECONDS in the pool. A connection PostgreSQL dropped while it sat idle is
    pinged and replaced, and the read succeeds; one dropped a moment after its last use
    fails a statement with MLflow's TEMPORARILY_UNAVAILABLE (a 503 MLflow's client
    retries), and the next call has a new connection: the trade, shown."""
    name = f"fs_ping_{secrets.token_hex(4)}"
    _copy_database(platform, databases.template_db, name)
    store = build_store(to_store_uri(_db_url(databases.settings, name)), str(tmp_path))
    pings: list[float] = []
    ping = store.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> Any:
        pings.append(time.monotonic())
        return ping(dbapi_connection)

    monkeypatch.setattr(store.engine.dialect, "do_ping", counted)
    run_id = databases.run_ids[0]
    try:
        for _ in range(5):  # back to back: the connection was used a moment ago
            store.get_metric_history(run_id, "loss")
        assert pings == []
        time.sleep(PING_IDLE_SECONDS + 0.2)
        store.get_metric_history(run_id, "loss")
        assert len(pings) == 1

        # dropped while idle: the ping finds out, the pool reconnects, the read succeeds
        assert _drop_connections(platform, name) >= 1
        time.sleep(PING_IDLE_SECONDS + 0.2)
        store.log_metric(run_id, Metric("loss", 1.0, 1, 1))
        assert len(pings) == 2
        assert [m.value for m in store.get_metric_history(run_id, "loss")] == [1.0]

        # dropped a moment after its last use: no ping, one failed call, then a new one
        assert _drop_connections(platform, name) >= 1
        with pytest.raises(MlflowException) as failed:
            store.get_metric_history(run_id, "loss")
        assert failed.value.error_code == "TEMPORARILY_UNAVAILABLE"
        assert [m.value for m in store.get_metric_history(run_id, "loss")] == [1.0]
        assert len(pings) == 2
    finally:
        dispose(store)
        platform.superuser_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_fast_store_searches_as_mlflow_does_with_one_read_per_table(databases: Databases) -> None:
    """After the workload, a search through each store answers the same runs with the same
    data; the fast one reads params, tags and metrics once each, not once per run."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    experiment = [databases.experiment_id]
    for order_by in (None, ["attributes.start_time DESC"], ["metrics.acc DESC"]):
        stock = databases.stock.search_runs(experiment, "", 1, 100, order_by=order_by)
        sqlalchemy.event.listen(databases.fast.engine, "before_cursor_execute", record)
        try:
            fast = databases.fast.search_runs(experiment, "", 1, 100, order_by=order_by)
        finally:
            sqlalchemy.event.remove(databases.fast.engine, "before_cursor_execute", record)
        assert len(stock) > RUNS  # the random runs (less those it deleted) and the racers
        as_text = [json.dumps(r.to_dictionary(), sort_keys=True) for r in stock]  # NaN equal
        assert [json.dumps(r.to_dictionary(), sort_keys=True) for r in fast] == as_text
        for table in ("params", "tags", "latest_metrics"):
            # Reads of the table's rows (the search itself joins latest_metrics too).
            reads = [s for s in statements if s.lstrip().startswith(f"SELECT {table}.")]
            assert len(reads) == 1, (table, reads)
        statements.clear()


def _prepared_on_connections_used_by(store: SqlAlchemyStore, calls: Any) -> list[list[str]]:
    """Run ``calls(store)``; then, on every connection it used, the statements the server
    holds prepared (pg_prepared_statements is per session)."""
    used: dict[int, Any] = {}

    def checkout(dbapi_connection, record, proxy):  # type: ignore[no-untyped-def]
        used[id(dbapi_connection)] = dbapi_connection

    sqlalchemy.event.listen(store.engine, "checkout", checkout)
    try:
        calls(store)
    finally:
        sqlalchemy.event.remove(store.engine, "checkout", checkout)
    prepared = []
    for dbapi_connection in used.values():  # idle in the pool: nobody else uses them
        rows = dbapi_connection.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        prepared.append([row[0] for row in rows])
        dbapi_connection.rollback()
    return prepared


def _searches(experiment_id: str) -> Any:
    def calls(store: SqlAlchemyStore) -> None:
        for _ in range(12):
            store.search_runs([experiment_id], "params.p1 = 'x'", 1, 10)

    return calls


def test_fast_store_plans_each_search_with_its_values(databases: Databases) -> None:
    """psycopg 3 prepares a statement on its fifth run on a connection, after which
    PostgreSQL may plan it for any values (3x slower searches with the index pack,
    docs/performance.md); the fast store's searches are never prepared (the only
    statement its connections may hold prepared is its metrics write). MLflow's store on
    the same driver does prepare, which shows the check sees prepared statements."""
    searches = _searches(databases.experiment_id)
    stock = _prepared_on_connections_used_by(databases.stock, searches)
    assert any("FROM runs" in text for texts in stock for text in texts), stock
    fast = _prepared_on_connections_used_by(databases.fast, searches)
    assert fast and not any(
        "INSERT INTO metrics" not in text for texts in fast for text in texts
    ), fast


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])
def test_fast_store_writes_metrics_with_a_prepared_statement_unless_told_not_to(
    platform: Platform,
    databases: Databases,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prepared: bool,
) -> None:
    """The metrics statement is prepared once per connection (MLOPS_DB_PREPARED_WRITES,
    default true), or never with false (for a pooler that cannot keep prepared
    statements); either way the rows are the ones written."""
    if not prepared:
        monkeypatch.setenv(PREPARED_WRITES_ENV, "false")
    name = f"fs_prep_{secrets.token_hex(4)}"
    _copy_database(platform, databases.template_db, name)
    store = build_store(to_store_uri(_db_url(databases.settings, name)), str(tmp_path))
    run_id = databases.run_ids[0]

    def writes(s: SqlAlchemyStore) -> None:
        for step in range(8):
            s.log_metric(run_id, Metric("loss", 1.0 / (step + 1), step, step))
            s.log_batch(run_id, [Metric(f"m{i}", float(step), 0, step) for i in range(3)], [], [])

    try:
        texts = _prepared_on_connections_used_by(store, writes)
        flat = [text for per_connection in texts for text in per_connection]
        if prepared:
            assert flat and all("INSERT INTO metrics" in text for text in flat), texts
            assert len(flat) < 16, texts  # per connection (and parameter types), not per call
        else:
            assert flat == [], texts
        history = [(m.value, m.step) for m in store.get_metric_history(run_id, "loss")]
        assert history == [(1.0 / (step + 1), step) for step in range(8)]
        latest = {m.key: (m.value, m.step) for m in store.get_run(run_id).data._metric_objs}
        assert latest == {"loss": (1.0 / 8, 7), "m0": (7.0, 7), "m1": (7.0, 7), "m2": (7.0, 7)}
    finally:
        dispose(store)
        platform.superuser_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- several writers at once -----------------------------------------------------------


def _race_value(rng: random.Random) -> Any:
    # No 0, -0 or NaN at a shared (step, timestamp): their ties keep whichever row came
    # first (in MLflow too), so the end state would depend on the interleaving. NaN gets
    # timestamps of its own (below); everything else is decided by (step, timestamp, value).
    return rng.choice([-2.5, -1, 0.5, 1, 1.0, 3, 7.25, math.inf, -math.inf, 1e300])


def _race_metric(rng: random.Random) -> Metric:
    if rng.random() < 0.08:
        return Metric(rng.choice(RACE_KEYS), float("nan"), rng.choice([7, 9]), rng.randrange(6))
    return Metric(
        rng.choice(RACE_KEYS), _race_value(rng), rng.choice([100, 200, 300]), rng.randrange(6)
    )


def race_workloads(rng: random.Random, run_ids: list[str]) -> list[list[tuple[str, tuple]]]:
    """One list of calls per writer, all on ``run_ids`` and RACE_KEYS; a shared pool of
    metrics makes several writers insert the very same rows."""
    shared = [_race_metric(rng) for _ in range(40)]
    writers = []
    for _ in range(WRITERS):
        ops: list[tuple[str, tuple]] = []
        for _ in range(25):
            run_id = rng.choice(run_ids)
            pick = [rng.choice(shared) if rng.random() < 0.4 else _race_metric(rng)
                    for _ in range(rng.choice([1, 1, 3, 10, 40]))]  # fmt: skip
            if len(pick) == 1 and rng.random() < 0.5:
                ops.append(("log_metric", (run_id, pick[0])))
            else:
                ops.append(("log_batch", (run_id, pick, [], [])))
        writers.append(ops)
    return writers


def run_writers(store: SqlAlchemyStore, writers: list[list[tuple[str, tuple]]]) -> list[Any]:
    """All writers at once (threads, each on its own connection), released together."""
    barrier = threading.Barrier(len(writers))
    failures: list[Any] = []

    def write(ops: list[tuple[str, tuple]]) -> None:
        barrier.wait()
        for name, args in ops:
            result = outcome(store, name, args)
            if result is not None:
                failures.append((name, args, result))

    threads = [threading.Thread(target=write, args=(ops,)) for ops in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return failures


def expected_latest(writers: list[list[tuple[str, tuple]]]) -> dict[tuple[str, str], tuple]:
    """What latest_metrics must hold whatever the interleaving: per run and key, the
    largest (step, timestamp, stored value), NaN stored as 0 and ±inf as ±max double."""
    best: dict[tuple[str, str], tuple] = {}
    for ops in writers:
        for name, args in ops:
            metrics = [args[1]] if name == "log_metric" else args[1]
            for m in metrics:
                value = float(m.value)
                nan = math.isnan(value)
                if nan:
                    value = 0.0
                elif math.isinf(value):
                    value = math.copysign(1.7976931348623157e308, value)
                row = (m.step, m.timestamp, value, nan)
                key = (args[0], m.key)
                if key not in best or row[:3] > best[key][:3]:
                    best[key] = row
    return best


def race_rows(store: SqlAlchemyStore, table: str, run_ids: list[str]) -> list[str]:
    ids = ",".join(f"'{r}'" for r in run_ids)
    with store.engine.connect() as conn:
        sql = f"SELECT t::text FROM {table} t WHERE run_uuid IN ({ids}) ORDER BY 1"
        return [row[0] for row in conn.exec_driver_sql(sql)]


def test_fast_store_matches_mlflow_with_concurrent_writers(databases: Databases) -> None:
    """Writers racing on the same runs and keys (latest_metrics rows created and raised by
    several transactions at once, the same metric rows inserted by several writers): both
    stores end with the same rows, and latest_metrics is what any order of the calls gives."""
    rng = random.Random(SEED + 1)
    step = RACE_RUNS_PER_ROUND
    mlflow_refused = 0
    for round_no in range(ROUNDS):
        run_ids = databases.race_run_ids[round_no * step : (round_no + 1) * step]
        writers = race_workloads(rng, run_ids)
        # MLflow's own store refuses some of these calls: when two transactions insert the
        # same row at once (metrics' or latest_metrics' key), its duplicate handling misses
        # the other's row and the call ends in a UniqueViolation, answered as BAD_REQUEST
        # (MLflow's race, not the kit's). Re-sent afterwards, one by one, they
        # land; the end state cannot depend on when a call ran (see expected_latest).
        refused = run_writers(databases.stock, writers)
        for name, args, result in refused:
            assert result[1] == "BAD_REQUEST" and "duplicate key" in result[2], result[2][:600]
            assert outcome(databases.stock, name, args) is None
        mlflow_refused += len(refused)
        # The kit's store takes every call the first time.
        assert run_writers(databases.fast, writers) == []
        want = expected_latest(writers)
        for table in ("metrics", "latest_metrics"):
            stock_rows = race_rows(databases.stock, table, run_ids)
            fast_rows = race_rows(databases.fast, table, run_ids)
            assert stock_rows == fast_rows, (
                f"round {round_no}, {table} differs: "
                f"only stock {sorted(set(stock_rows) - set(fast_rows))[:5]}, "
                f"only fast {sorted(set(fast_rows) - set(stock_rows))[:5]}"
            )
        for store in (databases.stock, databases.fast):
            ids = ",".join(f"'{r}'" for r in run_ids)
            with store.engine.connect() as conn:
                got = {
                    (r, k): (s, t, v, n)
                    for r, k, s, t, v, n in conn.exec_driver_sql(
                        "SELECT run_uuid, key, step, timestamp, value, is_nan "
                        f"FROM latest_metrics WHERE run_uuid IN ({ids})"
                    )
                }
            assert got == want, (round_no, type(store).__name__)
        assert len(want) == len(run_ids) * len(RACE_KEYS)
    print(f"MLflow's store refused {mlflow_refused} concurrent calls; the fast store none")


def test_server_uses_the_fast_store(platform: Platform, databases: Databases) -> None:
    settings = databases.settings.model_copy(
        update={
            "db_name": databases.server_db,
            "db_fast_metrics": True,
            "server_port": free_port(),
            "server_workers": 1,
            "prometheus": False,
            "auth_enabled": False,  # the store is the point; permissions: test_permissions
        }
    )
    argv = server_argv(settings, python=sys.executable)
    backend = argv[argv.index("--backend-store-uri") + 1]
    assert backend.startswith("mlops-postgresql://"), argv
    assert argv[argv.index("--registry-store-uri") + 1] == settings.database_url()
    env = inherited_environment(keep_settings=False)
    env.update(server_env(settings))
    log = Path(platform.root) / f"fast-store-server-{settings.server_port}.log"
    pid = spawn(argv, log_path=log, env=env)
    url = f"http://127.0.0.1:{settings.server_port}"
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url + "/health", timeout=3) as response:
                    return int(response.status) == 200
            except OSError:
                return False

        wait_until(healthy, timeout=120, what="mlflow server with the fast store", log_path=log)
        api = url + "/api/2.0/mlflow"
        run = requests.post(api + "/runs/create", json={"experiment_id": "0"}, timeout=30)
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        metrics = [
            {"key": f"m{i}", "value": float(i), "timestamp": 5, "step": s}
            for i in range(100)
            for s in (1, 2)
        ]
        logged = requests.post(
            api + "/runs/log-batch", json={"run_id": run_id, "metrics": metrics}, timeout=30
        )
        assert logged.status_code == 200, logged.text
        bad = requests.post(
            api + "/runs/log-batch",
            json={"run_id": run_id, "metrics": [{"key": "x" * 251, "value": 1.0}]},
            timeout=30,
        )
        assert bad.status_code == 400 and "INVALID_PARAMETER_VALUE" in bad.text, bad.text
        got = requests.get(api + "/runs/get", params={"run_id": run_id}, timeout=30).json()
        latest = {m["key"]: (m["step"], m["value"]) for m in got["run"]["data"]["metrics"]}
        assert latest == {f"m{i}": (2, float(i)) for i in range(100)}
        names = platform.superuser_sql(
            "SELECT DISTINCT application_name FROM pg_stat_activity "
            f"WHERE datname = '{databases.server_db}'"
        ).splitlines()
        assert APPLICATION_NAME in names, names
        model = requests.post(
            api + "/registered-models/create", json={"name": "fast-store-model"}, timeout=30
        )
        assert model.status_code == 200, model.text
    finally:
        terminate(pid)
