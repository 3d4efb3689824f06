"""`db status` and the guarded `db upgrade` against the real PostgreSQL of the session stack.

Each test works in a database of its own inside the session cluster, so the shared
tracking database is never changed.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import sqlalchemy

from mlops_platform import db
from tests.integration.conftest import Platform
from tests.support.schemas import PREVIOUS_MINOR_HEAD, migrate_to, mlflow_revisions

pytestmark = pytest.mark.integration


def _fresh(platform: Platform, name: str) -> tuple[dict[str, str], object]:
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    settings = platform.settings.model_copy(update={"db_name": name})
    return {**os.environ, "MLOPS_DB_NAME": name, "MLOPS_DB_WAIT_SECONDS": "3"}, settings


def _older_schema(settings) -> str:  # type: ignore[no-untyped-def]
    """A database as MLflow 3.16 left it: migrated with MLflow's Alembic scripts."""
    revisions = mlflow_revisions()
    assert PREVIOUS_MINOR_HEAD in revisions[1:], "update PREVIOUS_MINOR_HEAD for this MLflow"
    migrate_to(settings, PREVIOUS_MINOR_HEAD, experiment="kept-by-the-dump")
    return PREVIOUS_MINOR_HEAD


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
    behind = [r.revision for r in db.script_directory().walk_revisions()].index(older)
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


def _waits_for_an_advisory_lock(platform: Platform, proc: subprocess.Popen[str], name: str) -> bool:
    """True once a session waits for an advisory lock on database ``name`` (within 120 s,
    while ``proc`` runs)."""
    import time

    waiting = False
    deadline = time.monotonic() + 120
    watcher = db.make_engine(platform.settings)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with watcher.connect() as conn:
                blocked = conn.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_database d "
                        "ON d.oid = l.database WHERE l.locktype = 'advisory' "
                        "AND NOT l.granted AND d.datname = :n"
                    ),
                    {"n": name},
                ).scalar()
            if blocked:
                waiting = True
                break
            time.sleep(0.2)
    finally:
        watcher.dispose()
    return waiting


def test_status_and_upgrade_cover_the_auth_store(platform: Platform) -> None:
    """`db status` compares the auth store with MLflow's auth head; `db upgrade` dumps it
    and migrates it under the advisory lock `serve` takes, waiting while someone holds it."""
    from pathlib import Path

    from mlflow.server.auth.db.utils import migrate

    from mlops_platform import auth_store
    from tests.integration.conftest import CLI

    name = "auth_upgrade_test"
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    env = {**os.environ, "MLOPS_AUTH_DB_NAME": name}
    settings = platform.settings.model_copy(update={"auth_db_name": name})
    head = auth_store.head_revision()

    missing = platform.cli("db", "status", "--json", env=env, check=False)
    assert missing.returncode == 1, missing.stderr
    report = json.loads(missing.stdout)
    assert report["state"] == "current"  # the tracking database is fine ...
    assert report["auth_store"] == {"database": name, "state": "missing", "current": None,
                                    "head": head}  # fmt: skip
    human = platform.cli("db", "status", env=env, check=False).stdout
    assert f"auth store {name}: missing" in human and "next: mlops-platform db upgrade" in human

    # an auth store as an older MLflow left it
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    older = "2ed73881770d"
    engine = sqlalchemy.create_engine(settings.auth_database_url(with_password=True))
    migrate(engine, older)
    engine.dispose()
    outdated = json.loads(platform.cli("db", "status", "--json", env=env, check=False).stdout)
    assert outdated["auth_store"]["state"] == "outdated"
    assert outdated["auth_store"]["current"] == older

    # while another process holds serve's migration lock, the upgrade waits for it
    dump_dir = platform.root / "dumps-auth"
    with auth_store.migration_lock(settings):
        proc = subprocess.Popen(
            [*CLI, "--env-file", str(platform.env_file), "db", "upgrade", "--json",
             "--dump-dir", str(dump_dir)],
            env=env, cwd=platform.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        waiting = _waits_for_an_advisory_lock(platform, proc, name)
        assert waiting, proc.communicate(timeout=300) if proc.poll() is not None else "no waiter"
        assert auth_store.revision(settings) == older  # nothing migrated while it waits
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["skipped"] is None
    auth = result["auth_store"]
    assert auth["upgraded"] and auth["before"]["current"] == older
    assert auth["after"] == {"database": name, "state": "current", "current": head, "head": head}
    assert auth["dump"] and Path(auth["dump"]["path"]).is_file()
    assert auth["restore"].startswith("PGPASSWORD=... pg_restore") and name in auth["restore"]
    assert auth_store.revision(settings) == head

    current = platform.cli("db", "status", "--json", env=env)
    assert json.loads(current.stdout)["auth_store"]["state"] == "current"
    again = json.loads(platform.cli("db", "upgrade", "--json", env=env).stdout)
    assert "the auth store at" in again["skipped"] and not again["auth_store"]["upgraded"]
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
