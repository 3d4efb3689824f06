"""The Kubernetes start order, simulated on the real stack: one writer for the schema.

On an empty database (its own, on the session stack's PostgreSQL and SeaweedFS), three
processes start together, each with its own TMPDIR and state folder, as pods do:

- a tracking pod: ``serve --no-migrate`` (what the Deployment runs after its init
  container's ``serve --wait-for-head``): waits for head, never migrates;
- a local replica: plain ``serve`` (the local stack's path): migrates under the lock;
- the migrate Job: ``serve --migrate-only``.

Exactly one of the two writers creates the schema, migrates the auth store and builds
each index; the other finds the work done. Both servers serve; no index is dropped or
rebuilt, and the pack ends applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from mlops_platform import db, indexes
from mlops_platform.settings import load_settings
from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.support.proc import clean_env

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "mlops_platform"]


def _start(
    platform: Platform, root: Path, name: str, dbname: str, args: list[str]
) -> tuple[subprocess.Popen[str], int, Path]:
    port = free_port()
    tmp = root / name / "tmp"
    tmp.mkdir(parents=True)
    log = root / name / "log.txt"
    env = clean_env(
        TMPDIR=str(tmp),
        MLOPS_DB_NAME=dbname,
        MLOPS_AUTH_DB_NAME=f"{dbname}_auth",
        MLOPS_SERVER_PORT=str(port),
        MLOPS_SERVER_WORKERS="1",
        MLOPS_STATE_DIR=str(root / name / "state"),
        MLOPS_PROMETHEUS="false",
    )
    handle = log.open("w")
    proc = subprocess.Popen(
        [*CLI, "--env-file", str(platform.env_file), "serve", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=root,
        start_new_session=True,  # its own group: mlflow's workers stop with it
    )
    handle.close()
    return proc, port, log


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_one_writer_on_an_empty_database(platform: Platform, tmp_path: Path) -> None:
    dbname = f"start_{uuid.uuid4().hex[:8]}"
    user = platform.settings.db_parts()["user"]
    for name in (dbname, f"{dbname}_auth"):
        platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{user}"')
    root = tmp_path
    procs = {
        "pod": _start(platform, root, "pod", dbname, ["--no-migrate", "--wait-seconds", "180"]),
        "replica": _start(platform, root, "replica", dbname, []),
        "job": _start(platform, root, "job", dbname, ["--migrate-only"]),
    }
    try:
        deadline = time.monotonic() + 180
        serving = {"pod": False, "replica": False}
        while time.monotonic() < deadline and not all(serving.values()):
            for name in serving:
                proc, port, log = procs[name]
                assert proc.poll() is None, f"{name} exited:\n{log.read_text()}"
                serving[name] = serving[name] or _healthy(port)
            time.sleep(1)
        logs = {name: log.read_text() for name, (_, _, log) in procs.items()}
        assert all(serving.values()), f"not serving: {serving}\n{logs}"
        job = procs["job"][0]
        assert job.wait(timeout=120) == 0, logs["job"]
        logs = {name: log.read_text() for name, (_, _, log) in procs.items()}
        everything = "\n".join(logs.values())
        # Exactly one writer created the schema and migrated the auth store.
        assert everything.count("empty database: creating MLflow's schema") == 1, logs
        auth = everything.count("auth store migrated: empty") + everything.count(
            "migrating the auth store"
        )
        assert auth == 1, logs
        assert "creating" not in logs["pod"] and "building on" not in logs["pod"], logs["pod"]
        assert "never migrates" in logs["pod"]
        # Each index built once, none dropped or rebuilt.
        for spec in indexes.PACK:
            assert everything.count(f"{spec.name}: building on") == 1, (spec.name, logs)
        assert "rebuilding" not in everything and "dropping" not in everything, logs
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _, _ in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    settings = load_settings(platform.env_file, db_name=dbname, auth_db_name=f"{dbname}_auth")
    assert db.schema_status(settings).state == "current"
    assert {i.state for i in indexes.list_indexes(settings)} == {"applied"}
    for name in (dbname, f"{dbname}_auth"):
        platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
