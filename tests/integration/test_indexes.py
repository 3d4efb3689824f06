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

import pytest
import sqlalchemy
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
)

from mlops_platform import db, indexes
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


def test_a_btree_on_params_key_value_would_break_long_params(platform: Platform) -> None:
    """Why the pack uses hash indexes: measured here, on a database of its own."""
    name = "btree_demo"
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    settings = platform.settings.model_copy(update={"db_name": name})
    db.create_schema(settings)
    engine = db.make_engine(settings)
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
