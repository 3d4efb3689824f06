"""`mlops-platform rotate` on a real local stack of its own (the session stack's secrets are
other tests' credentials): the new values work end to end, the old ones no longer do.

Real PostgreSQL (the role's password), real SeaweedFS (the S3 identity), real nginx (the
password file and the proxy secret it forwards) and the real tracking server (its Flask
key, its database and bucket logins), through the proxy as a client would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from mlops_platform.settings import PlatformSettings, load_settings
from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env
from tests.support.stacks import down_later

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def stack() -> Iterator[Path]:
    require_binaries()
    root = make_stack_dir("mlops-rotate-")
    env_file = write_env(root)
    try:
        up = run_cli(env_file, "up", "--json", timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        yield env_file
    finally:
        down_later(env_file, remove=root)


def _url(settings: PlatformSettings) -> str:
    return f"http://127.0.0.1:{settings.proxy_port}"


def _workload(settings: PlatformSettings, password: str, tag: str) -> int:
    """Create an experiment and a run, upload an artifact and read it back: the database and
    the bucket, through nginx and the tracking server. Returns the first failing status."""
    s = requests.Session()
    s.auth = (settings.proxy_user, password)
    base = _url(settings)
    r = s.post(f"{base}{API}/experiments/create", json={"name": f"rotate-{tag}"}, timeout=60)
    if r.status_code != 200:
        return r.status_code
    exp = r.json()["experiment_id"]
    r = s.post(f"{base}{API}/runs/create", json={"experiment_id": exp}, timeout=60)
    if r.status_code != 200:
        return r.status_code
    run = r.json()["run"]["info"]["run_id"]
    art = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/a.txt"
    r = s.put(base + art, data=tag.encode(), timeout=60)
    if r.status_code != 200:
        return r.status_code
    r = s.get(base + art, timeout=60)
    return r.status_code if r.content == tag.encode() else 599


def _db_login(settings: PlatformSettings, password: str) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=settings.db_port,
            user=settings.db_user,
            password=password,
            dbname=settings.db_name,
            connect_timeout=10,
        ):
            return True
    except psycopg.OperationalError:
        return False


def test_rotate_every_secret_then_again(stack: Path) -> None:
    old = load_settings(stack)
    old_password = old.proxy_password.get_secret_value()
    old_db = old.db_password.get_secret_value()
    assert _workload(old, old_password, "before") == 200

    result = run_cli(stack, "rotate", "all", "--json", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert set(report["rotated"]) == {
        "MLOPS_DB_PASSWORD",
        "MLOPS_S3_ACCESS_KEY_ID",
        "MLOPS_S3_SECRET_ACCESS_KEY",
        "MLOPS_PROXY_PASSWORD",
        "MLOPS_PROXY_SECRET",
        "MLOPS_FLASK_SECRET_KEY",
    }
    assert {"tracking", "nginx"} <= set(report["restarted"])

    new = load_settings(stack)
    for name in (
        "db_password",
        "s3_access_key_id",
        "s3_secret_access_key",
        "proxy_password",
        "proxy_secret",
        "flask_secret_key",
    ):
        value = getattr(new, name).get_secret_value()
        assert value != getattr(old, name).get_secret_value(), name
        assert value not in result.stdout + result.stderr, f"{name} was printed"
    assert stack.stat().st_mode & 0o077 == 0

    # Everything works with the new values, nothing with the old ones.
    new_password = new.proxy_password.get_secret_value()
    assert _workload(new, new_password, "after") == 200
    assert _workload(new, old_password, "old") == 401
    assert _db_login(new, new.db_password.get_secret_value())
    assert not _db_login(new, old_db)

    # Again, only the proxy password: no restart needed, effective at once.
    again = run_cli(stack, "rotate", "proxy-password", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["restarted"] == []
    latest = load_settings(stack).proxy_password.get_secret_value()
    assert _workload(new, latest, "again") == 200
    assert _workload(new, new_password, "stale") == 401


def test_rotate_refuses_bad_input_changing_nothing(stack: Path) -> None:
    before = stack.read_text()
    result = run_cli(stack, "rotate", "db-pasword")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "db-password" in result.stderr and "Traceback" not in result.stderr
    assert stack.read_text() == before
