"""The index pack on the session stack's real PostgreSQL: correctness, never timings.

It applies twice without error, drops cleanly, never touches MLflow's alembic_version,
and every write MLflow accepts at its maximum lengths still succeeds with it applied.
Timings live in benchmarks/indexes.py and docs/indexes.md.
"""

from __future__ import annotations

import json
import os
import random
import string
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
)

from mlops_platform import db, indexes
from mlops_platform.settings import PlatformSettings
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


def _incompressible(n: int) -> str:
    """Random text: PostgreSQL cannot compress it below the btree row limit."""
    rng = random.Random(n)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


@pytest.fixture
def pack(platform: Platform) -> Iterator[None]:
    """The pack applied for the test; the database left as it was found."""
    before = indexes.pack_applied(platform.settings)
    yield
    if not before:
        platform.cli("db", "indexes", "drop", "--yes")


def _alembic(platform: Platform) -> str:
    engine = db.make_engine(platform.settings)
    with engine.connect() as conn:
        value = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    return str(value)


def test_apply_twice_then_drop_cleanly(platform: Platform, pack: None) -> None:
    revision = _alembic(platform)
    platform.cli("db", "indexes", "drop", "--yes")
    listed = platform.cli("db", "indexes", "list", "--json", check=False)
    assert listed.returncode == 1
    assert {i["state"] for i in json.loads(listed.stdout)["indexes"]} == {"missing"}

    first = json.loads(platform.cli("db", "indexes", "apply", "--json").stdout)["actions"]
    assert {a["action"] for a in first} == {"created"}
    second = json.loads(platform.cli("db", "indexes", "apply", "--json").stdout)["actions"]
    assert {a["action"] for a in second} == {"skipped"}
    listed = json.loads(platform.cli("db", "indexes", "list", "--json").stdout)
    assert all(i["state"] == "applied" for i in listed["indexes"])
    assert all(i["pack_version"] == indexes.PACK_VERSION for i in listed["indexes"])
    assert platform.cli("db", "analyze").returncode == 0

    dropped = json.loads(platform.cli("db", "indexes", "drop", "--yes", "--json").stdout)["actions"]
    assert {a["action"] for a in dropped} == {"dropped"}
    engine = db.make_engine(platform.settings)
    with engine.connect() as conn:
        left = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'mlops\\_%'")
        ).scalar()
        table = conn.execute(
            sqlalchemy.text("SELECT to_regclass(:t)"), {"t": indexes.VERSION_TABLE}
        ).scalar()
    engine.dispose()
    assert left == 0 and table is None
    again = json.loads(platform.cli("db", "indexes", "drop", "--yes", "--json").stdout)["actions"]
    assert {a["action"] for a in again} == {"absent"}
    assert _alembic(platform) == revision, "the pack must never touch alembic_version"


def test_invalid_index_from_an_interrupted_build_is_rebuilt(platform: Platform, pack: None) -> None:
    platform.cli("db", "indexes", "apply")
    name = indexes.PACK[0].name
    platform.superuser_sql(
        f"\\c {platform.settings.db_name}\n"
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{name}'::regclass;"
    )
    states = {i.name: i.state for i in indexes.list_indexes(platform.settings)}
    assert states[name] == "invalid"
    actions = {a.name: a.action for a in indexes.apply_pack(platform.settings)}
    assert actions[name] == "rebuilt"
    assert indexes.pack_applied(platform.settings)


def test_maximum_lengths_still_log_with_the_pack(
    platform: Platform, pack: None, mlflow_client_env: dict[str, str]
) -> None:
    """Every write MLflow accepts, at its maximum lengths, through the real server."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    platform.cli("db", "indexes", "apply")
    client = MlflowClient(mlflow_client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"max-lengths-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    key = "k" + _incompressible(MAX_ENTITY_KEY_LENGTH - 1)
    param_value = _incompressible(MAX_PARAM_VAL_LENGTH)
    tag_value = _incompressible(MAX_TAG_VAL_LENGTH)
    client.log_batch(
        run.info.run_id,
        params=[Param(key, param_value)],
        tags=[RunTag(key, tag_value)],
        metrics=[Metric(key, 0.5, 0, 0)],
    )
    client.log_param(run.info.run_id, "p2", _incompressible(MAX_PARAM_VAL_LENGTH - 1))
    client.set_tag(run.info.run_id, "t2", _incompressible(MAX_TAG_VAL_LENGTH))
    got = client.get_run(run.info.run_id).data
    assert got.params[key] == param_value
    assert got.tags[key] == tag_value
    assert got.metrics[key] == 0.5
    found = client.search_runs([experiment], f"params.p2 = '{got.params['p2']}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]

    # The columns hold up to 8,000 characters (older clients, direct writers): also fine.
    engine = db.make_engine(platform.settings)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("INSERT INTO params (key, value, run_uuid) VALUES ('p8000', :v, :r)"),
            {"v": _incompressible(8000), "r": run.info.run_id},
        )
    engine.dispose()


def _own_database(platform: Platform, name: str) -> tuple[Any, sqlalchemy.engine.Engine]:
    """A fresh database NAME on the platform's cluster with MLflow's schema; its settings
    and an engine on it."""
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    settings = platform.settings.model_copy(update={"db_name": name})
    db.create_schema(settings)
    engine = db.make_engine(settings)
    return settings, engine


def test_a_btree_on_params_key_value_would_break_long_params(platform: Platform) -> None:
    """Why the pack uses hash indexes: measured here, on a database of its own."""
    name = "btree_demo"
    settings, engine = _own_database(platform, name)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE INDEX bad_params_kv ON params (key, value)"))
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO experiments (experiment_id, name, artifact_location, "
                "lifecycle_stage) VALUES (1, 'e', 's3://x', 'active')"
            )
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status) "
                "VALUES ('r1', 1, 'active', 'RUNNING')"
            )
        )
    too_long = pytest.raises(sqlalchemy.exc.OperationalError, match="index row size")
    with too_long, engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("INSERT INTO params VALUES ('k', :v, 'r1')"),
            {"v": _incompressible(MAX_PARAM_VAL_LENGTH)},
        )
    engine.dispose()
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_index_commands_on_a_bad_database_are_one_line(platform: Platform) -> None:
    name = "indexes_empty"
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    env = {**os.environ, "MLOPS_DB_NAME": name}
    result = platform.cli("db", "indexes", "apply", env=env, check=False)
    assert result.returncode == 2 and "has no MLflow tables" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    wrong = platform.cli(
        "db", "indexes", "list", env={**os.environ, "MLOPS_DB_PASSWORD": "x" * 20}, check=False
    )
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr


def _plan_nodes(plan: dict[str, object]) -> Iterator[dict[str, object]]:
    yield plan
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        yield from _plan_nodes(child)


def _search_plan(
    settings: PlatformSettings,
    experiment: str,
    filter_string: str = "",
    order_by: list[str] | None = None,
) -> tuple[str, list[dict[str, object]]]:
    """The runs statement MLflow's own store sends for a search, and its plan's nodes."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(settings.database_url(with_password=True), "s3://unused/artifacts")
    statements: list[tuple[str, object]] = []

    def listen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM runs" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", listen)
    try:
        store.search_runs([experiment], filter_string, 1, 100, order_by=order_by)
    finally:
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", listen)
    assert len(statements) == 1, statements
    statement, parameters = statements[0]
    with store.engine.connect() as conn:
        cursor = conn.connection.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        plan = cursor.fetchone()[0]
    store.engine.dispose()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return statement, list(_plan_nodes(plan[0]["Plan"]))


def _listing_plan(settings: PlatformSettings, experiment: str) -> list[dict[str, object]]:
    """The plan of the runs query MLflow's own store sends for the UI's run table."""
    statement, nodes = _search_plan(settings, experiment, order_by=["attributes.start_time DESC"])
    assert "CASE WHEN (runs.start_time IS NULL)" in statement, statement  # the shape indexed
    return nodes


def _insert_runs(
    conn: sqlalchemy.Connection,
    count: int,
    *,
    experiments: int,
    start_time: str = "1700000000000 + gs::bigint * 1000",
    stage: str = "'active'",
) -> None:
    """Experiments 1..EXPERIMENTS and COUNT runs spread over them in turn, in SQL; the run
    with number `gs` has run_uuid md5(gs), START_TIME and STAGE are SQL over `gs`."""
    conn.execute(
        sqlalchemy.text(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
            "SELECT e, 'exp-' || e, 's3://x/' || e, 'active' FROM generate_series(1, :e) e"
        ),
        {"e": experiments},
    )
    conn.execute(
        sqlalchemy.text(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
            "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
            "artifact_uri, experiment_id) "
            "SELECT md5(gs::text), 'run-' || gs, 'LOCAL', 'train.py', '', 'alice', "
            f"'FINISHED', {start_time}, NULL, '', {stage}, "
            "'s3://x/' || md5(gs::text), 1 + gs % :e FROM generate_series(1, :n) gs"
        ),
        {"e": experiments, "n": count},
    )


def test_run_listing_by_start_time_reads_the_index_instead_of_sorting(platform: Platform) -> None:
    """Pack v3: MLflow's nulls-last start-time order is read from an index, not sorted.

    A database of its own with 60,000 runs (two experiments, 2 % deleted, a few without a
    start time), analyzed: the size at which PostgreSQL 15 plans the listing in parallel
    and can use an order the index gives on the leading keys (an Incremental Sort on
    top only completes the DISTINCT MLflow asks for). Without the index it sorts the whole
    experiment, which the second half checks on the same data.
    """
    name = "listing_plan"
    settings, engine = _own_database(platform, name)
    with engine.begin() as conn:
        _insert_runs(
            conn,
            60000,
            experiments=2,
            start_time="CASE WHEN gs % 1000 = 0 THEN NULL "
            "ELSE 1700000000000 + gs::bigint * 1000 END",
            stage="CASE WHEN gs % 50 = 0 THEN 'deleted' ELSE 'active' END",
        )
    engine.dispose()
    spec = next(s for s in indexes.PACK if s.name == "mlops_runs_exp_stage_order_start")
    try:
        # A database with the v2 pack, then upgraded: only the new index is built.
        indexes.apply_pack(settings, specs=tuple(s for s in indexes.PACK if s != spec))
        first = {a.name: a.action for a in indexes.apply_pack(settings)}
        assert first.pop(spec.name) == "created"
        assert set(first.values()) == {"skipped"}, first
        again = {a.name: a.action for a in indexes.apply_pack(settings)}
        assert set(again.values()) == {"skipped"}, again
        states = {s.name: s for s in indexes.list_indexes(settings)}
        assert states[spec.name].state == "applied"
        assert states[spec.name].pack_version == indexes.PACK_VERSION
        indexes.analyze(settings)

        nodes = _listing_plan(settings, "1")
        scans = [n for n in nodes if n.get("Relation Name") == "runs"]
        assert [n.get("Index Name") for n in scans] == [spec.name], nodes
        assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes

        # The same query without the index: PostgreSQL sorts every run of the experiment.
        indexes.drop_pack(settings, specs=(spec,))
        nodes = _listing_plan(settings, "1")
        assert [n for n in nodes if n["Node Type"] == "Sort"], nodes
        assert spec.name not in {n.get("Index Name") for n in nodes}
    finally:
        platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MLFLOWS_METRIC_INDEXES = {"latest_metric_pk", "index_latest_metrics_run_uuid"}


def test_a_metric_filter_reads_the_matches_from_the_index(platform: Platform) -> None:
    """Pack v4: `metrics.accuracy > 0.95` in one experiment of many.

    A database of its own: 40,000 runs in ten experiments, each with `accuracy` and `loss`
    in latest_metrics, analyzed. With the index the matching rows of every experiment come
    from the index alone (an index-only scan), joined with the experiment's runs. Without
    it (the second half) MLflow's statement reads latest_metrics through MLflow's own
    indexes and the table: one probe per run of the experiment at 100k runs, every row of
    the key at this size.
    """
    name = "metric_filter_plan"
    settings, engine = _own_database(platform, name)
    with engine.begin() as conn:
        _insert_runs(conn, 40000, experiments=10)
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "SELECT k, (hashtext(k || gs) & 65535)::float8 / 65535, 1700000000000, 9, "
                "false, md5(gs::text) FROM generate_series(1, 40000) gs, "
                "unnest(ARRAY['accuracy', 'loss']) k"
            )
        )
    engine.dispose()
    spec = next(s for s in indexes.PACK if s.name == "mlops_latest_metrics_key_value")
    try:
        indexes.apply_pack(settings)
        indexes.analyze(settings)  # VACUUM ANALYZE: the index-only scan needs no heap visit

        _, nodes = _search_plan(settings, "3", "metrics.accuracy > 0.95")
        metric_scans = [n for n in nodes if n.get("Relation Name") == "latest_metrics"]
        assert [n["Node Type"] for n in metric_scans] == ["Index Only Scan"], nodes
        assert metric_scans[0]["Index Name"] == spec.name

        indexes.drop_pack(settings, specs=(spec,))
        _, nodes = _search_plan(settings, "3", "metrics.accuracy > 0.95")
        metric_scans = [n for n in nodes if n.get("Relation Name") == "latest_metrics"]
        assert metric_scans and spec.name not in {n.get("Index Name") for n in nodes}
        assert {n.get("Index Name") for n in metric_scans} <= MLFLOWS_METRIC_INDEXES, nodes
        assert "Index Only Scan" not in {n["Node Type"] for n in metric_scans}, nodes
    finally:
        platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
