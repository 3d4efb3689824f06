"""`db status` and the guarded `db upgrade` against the real PostgreSQL of the session stack.

Each test works in a database of its own inside the session cluster, so the shared
tracking database is never changed.
"""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy

from mlops_platform import db
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

# The schema head of MLflow 3.16.0, the minor release before the kit's 3.17: read from
# its wheel (mlflow/store/db_migrations/versions). Migrating a database with today's
# Alembic scripts up to it yields exactly the schema MLflow 3.16 created.
PREVIOUS_MINOR_HEAD = "b7e2c1a4d9f3"


def _fresh(platform: Platform, name: str) -> tuple[dict[str, str], object]:
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    settings = platform.settings.model_copy(update={"db_name": name})
    return {**os.environ, "MLOPS_DB_NAME": name, "MLOPS_DB_WAIT_SECONDS": "3"}, settings


def _older_schema(settings) -> str:  # type: ignore[no-untyped-def]
    """A database as MLflow 3.16 left it: migrated with MLflow's Alembic scripts."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    revisions = [r.revision for r in script.walk_revisions()]
    assert PREVIOUS_MINOR_HEAD in revisions[1:], "update PREVIOUS_MINOR_HEAD for this MLflow"
    older = PREVIOUS_MINOR_HEAD
    engine = db.make_engine(settings)
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(settings.database_url(with_password=True))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, older)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO experiments (experiment_id, name, artifact_location, "
                "lifecycle_stage) VALUES (7, 'kept-by-the-dump', 's3://x/7', 'active')"
            )
        )
    engine.dispose()
    return older


def test_status_on_the_live_database(platform: Platform) -> None:
    report = json.loads(platform.cli("db", "status", "--json").stdout)
    assert report["state"] == "current"
    assert report["current"] == report["head"] == db.head_revision()
    assert report["pending"] == []
    assert report["database_bytes"] > 0
    assert report["largest_tables"] and report["server_version"]
    human = platform.cli("db", "status").stdout
    assert "schema: current" in human and "largest tables" in human


def test_upgrade_from_the_previous_minor_dumps_migrates_verifies_and_restores(
    platform: Platform,
) -> None:
    env, settings = _fresh(platform, "upgrade_older")
    older = _older_schema(settings)

    status = platform.cli("db", "status", "--json", env=env, check=False)
    assert status.returncode == 1
    report = json.loads(status.stdout)
    assert report["state"] == "outdated" and report["current"] == older
    behind = [r.revision for r in db._script_directory().walk_revisions()].index(older)
    assert len(report["pending"]) == behind >= 1

    dump_dir = platform.root / "dumps"
    result = platform.cli("db", "upgrade", "--dump-dir", str(dump_dir), "--json", env=env)
    done = json.loads(result.stdout)
    assert done["before"] == older and done["after"] == db.head_revision()
    assert len(done["applied"]) == behind
    assert done["dump"]["entries"] > 10
    assert "pg_restore --clean --if-exists" in done["restore"]
    assert platform.settings.db_password.get_secret_value() not in result.stdout + result.stderr
    assert db.schema_status(settings).state == "current"

    again = platform.cli("db", "upgrade", env=env)
    assert "nothing to do" in again.stdout

    # The dump restores: a new database gets the old revision and the data back.
    _, restored = _fresh(platform, "upgrade_restored")
    db.restore_dump(restored, dump_dir / os.path.basename(done["dump"]["path"]))
    assert db.schema_status(restored).current == older
    engine = db.make_engine(restored)
    with engine.connect() as conn:
        name = conn.execute(
            sqlalchemy.text("SELECT name FROM experiments WHERE experiment_id = 7")
        ).scalar()
    engine.dispose()
    assert name == "kept-by-the-dump"


def test_upgrade_refuses_a_newer_schema_and_changes_nothing(platform: Platform) -> None:
    env, settings = _fresh(platform, "upgrade_newer")
    db.create_schema(settings)
    engine = db.make_engine(settings)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    engine.dispose()
    dump_dir = platform.root / "dumps-newer"
    result = platform.cli("db", "upgrade", "--dump-dir", str(dump_dir), env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "newer than this MLflow" in result.stderr and "never downgrade" in result.stderr
    assert not dump_dir.exists()
    assert db.schema_status(settings).current == "ffffffffffff"


def test_wrong_password_and_unreachable_host_are_one_line(platform: Platform) -> None:
    wrong = platform.cli(
        "db", "status", env={**os.environ, "MLOPS_DB_PASSWORD": "a-wrong-password-123"}, check=False
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "password authentication failed" in wrong.stderr
    assert "MLOPS_DB_PASSWORD" in wrong.stderr and "Traceback" not in wrong.stderr
    down = platform.cli(
        "db", "upgrade", env={**os.environ, "MLOPS_DB_PORT": "1"}, check=False, timeout=60
    )
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert "cannot connect to the database" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_upgrade_refuses_while_a_server_of_another_mlflow_runs(platform: Platform) -> None:
    """A server of MLflow 2.99 still serving this database: migrating would strand it."""
    import http.server
    import threading

    from tests.conftest import free_port

    class OldServer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = b"2.99.0" if self.path == "/version" else b"OK"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), OldServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env, settings = _fresh(platform, "upgrade_guarded")
        older = _older_schema(settings)
        dump_dir = platform.root / "dumps-guarded"
        result = platform.cli(
            "db",
            "upgrade",
            "--dump-dir",
            str(dump_dir),
            env={**env, "MLOPS_SERVER_PORT": str(port)},
            check=False,
        )
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stderr
    assert "MLflow 2.99.0 is running" in result.stderr and "stop it first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not dump_dir.exists()
    assert db.schema_status(settings).current == older
