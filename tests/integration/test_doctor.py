"""`doctor` on a healthy stack, then with each fault injected in turn.

The faults (wrong S3 secret, bucket public, bucket deleted, schema one migration behind,
tracking server stopped, PostgreSQL stopped, proxy without auth, a public name the
server does not know, a 1 MB body limit) go to a second stack of
this module's own, which is repaired after each fault and brought down at the end: the
session stack other test files share is never touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from mlops_platform import db, s3
from mlops_platform.settings import PlatformSettings, load_settings
from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env
from tests.support.stacks import down_later

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    env_file: Path
    settings: PlatformSettings
    env: dict[str, str]

    def cli(self, *args: str, **env: str):  # type: ignore[no-untyped-def]
        return run_cli(self.env_file, *args, env={**self.env, **env})

    def doctor(self, **env: str) -> tuple[int, dict[str, object], dict[tuple[str, str], dict]]:
        result = self.cli("doctor", "--json", **env)
        assert "Traceback" not in result.stderr, result.stderr
        report = json.loads(result.stdout)
        by_check = {(f["component"], f["check"]): f for f in report["findings"]}
        return result.returncode, report, by_check

    def pid(self, service: str) -> int:
        state = json.loads((self.settings.state_dir / "state.json").read_text())
        return int(state["services"][service]["pid"])

    def up(self) -> None:
        result = self.cli("up")
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_binaries()
    root = make_stack_dir("mlops-doctor-")
    env_file = write_env(root)
    # SeaweedFS refuses writes to an encrypted bucket unless it has an SSE key.
    # `serve` applies the index pack at start (MLOPS_DB_APPLY_INDEXES).
    env = {"WEED_S3_SSE_KEK": secrets.token_hex(32), "MLOPS_DB_APPLY_INDEXES": "true"}
    up = run_cli(env_file, "up", env=env, timeout=600)
    assert up.returncode == 0, up.stderr
    it = Stack(env_file, load_settings(env_file), env)
    try:
        listed = it.cli("db", "indexes", "list")
        assert listed.returncode == 0, "serve did not apply the index pack: " + listed.stdout
        log = (it.settings.state_dir / "logs" / "tracking.log").read_text()
        assert "mlops_runs_exp_stage_start: building" in log
        policy = it.cli("s3", "apply-policy", "--json")
        assert json.loads(policy.stdout)["encryption"] in ("set", "skipped"), policy.stdout
        yield it
    finally:
        down_later(env_file, remove=root)


def _failing(findings: dict[tuple[str, str], dict]) -> list[tuple[str, str]]:
    return [k for k, f in findings.items() if f["status"] == "fail"]


def _fails(
    stack: Stack, check: tuple[str, str], *, detail: str = "", remedy: str = "", **env: str
) -> dict[tuple[str, str], dict]:
    """`doctor` (with ENV) exits 2 and CHECK fails, its detail naming DETAIL and its remedy
    REMEDY; every finding of that run."""
    code, _, findings = stack.doctor(**env)
    assert code == 2
    found = findings[check]
    assert found["status"] == "fail" and detail in found["detail"], found
    assert remedy in found["remedy"], found
    return findings


def test_healthy_stack_exit_0(stack: Stack) -> None:
    # How long doctor takes is measured by `python -m benchmarks.startup`, not asserted.
    code, report, findings = stack.doctor()
    assert code == 0, [f for f in report["findings"] if f["status"] != "ok"]  # type: ignore[union-attr]
    assert report["status"] == "ok"
    for key in (
        ("database", "schema"),
        ("database", "index pack"),
        ("s3", "write-read-delete"),
        ("tracking", "version"),
        ("proxy", "api"),
        ("proxy", "artifact"),
        ("proxy", "anonymous refused"),
        ("disk", "postgres data"),
    ):
        assert findings[key]["status"] == "ok", findings[key]
    human = stack.cli("doctor")
    assert human.returncode == 0 and "healthy (exit 0)" in human.stdout


def test_degraded_when_the_index_pack_is_missing(stack: Stack) -> None:
    assert stack.cli("db", "indexes", "drop", "--yes").returncode == 0
    try:
        code, _, findings = stack.doctor()
        assert code == 1
        assert findings[("database", "index pack")]["status"] == "warn"
        assert "db indexes apply" in findings[("database", "index pack")]["remedy"]
    finally:
        assert stack.cli("db", "indexes", "apply").returncode == 0


def test_wrong_s3_secret(stack: Stack) -> None:
    remedy = "MLOPS_S3_SECRET_ACCESS_KEY"
    _fails(stack, ("s3", "credentials"), remedy=remedy, MLOPS_S3_SECRET_ACCESS_KEY="W" * 40)


def test_bucket_made_public(stack: Stack) -> None:
    client = s3.client(stack.settings, purpose="admin")  # the bucket's ACL and life: the admin's
    bucket = stack.settings.s3_bucket
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    try:
        findings = _fails(stack, ("s3", "acl"), remedy="apply-policy")
        assert findings[("s3", "anonymous")]["status"] == "fail"
    finally:
        client.put_bucket_acl(Bucket=bucket, ACL="private")
    assert stack.doctor()[0] == 0


def test_bucket_deleted(stack: Stack) -> None:
    client = s3.client(stack.settings, purpose="admin")  # the bucket's ACL and life: the admin's
    bucket = stack.settings.s3_bucket
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
    try:
        _fails(stack, ("s3", "bucket"), detail="does not exist", remedy="mlops-platform up")
        # (SeaweedFS re-creates a missing bucket on the server's next upload, so the
        # artifact round trip itself may pass: the bucket check is what names it.)
    finally:
        s3.ensure_bucket(stack.settings)
        assert stack.cli("s3", "apply-policy").returncode == 0
    assert stack.doctor()[0] == 0


def test_schema_one_migration_behind(stack: Stack) -> None:
    """Really downgrade the last migration with MLflow's Alembic scripts, then upgrade."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config

    config = _get_alembic_config(stack.settings.database_url(with_password=True))
    engine = db.make_engine(stack.settings)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "-1")
    engine.dispose()
    try:
        assert db.schema_status(stack.settings).state == "outdated"
        behind = "1 migration(s) behind"
        _fails(stack, ("database", "schema"), detail=behind, remedy="db upgrade")
    finally:
        upgraded = stack.cli("db", "upgrade", "--no-dump")
        assert upgraded.returncode == 0, upgraded.stderr
    assert stack.doctor()[0] == 0


def _kill_tree(pid: int) -> None:
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_tracking_server_stopped(stack: Stack) -> None:
    _kill_tree(stack.pid("tracking"))
    try:
        findings = _fails(stack, ("tracking", "answers"), remedy="mlops-platform up")
        assert ("proxy", "api") in _failing(findings)
    finally:
        stack.up()
    assert stack.doctor()[0] == 0


def test_postgres_stopped(stack: Stack) -> None:
    from mlops_platform.stack.base import StateFile
    from mlops_platform.stack.postgres import Postgres

    Postgres(stack.settings, StateFile.load(stack.settings.state_dir)).stop(lambda _m: None)
    try:
        # run_cli's timeout is the deadline
        _fails(stack, ("database", "reachable"), remedy="start PostgreSQL")
    finally:
        stack.up()
    assert stack.doctor()[0] == 0


def test_proxy_without_auth(stack: Stack) -> None:
    site = stack.settings.state_dir / "nginx" / "conf.d" / "mlflow.conf"
    original = site.read_text()
    site.write_text(
        re.sub(r"auth_basic_user_file [^;]+;", "", original.replace('auth_basic "MLflow";', ""))
    )
    os.kill(stack.pid("nginx"), signal.SIGHUP)  # nginx reloads its configuration
    api = stack.settings.resolved_public_url + "/api/2.0/mlflow/experiments/search"
    deadline = time.monotonic() + 15

    def asks_for_a_password() -> bool:
        answer = requests.post(api, json={"max_results": 1}, timeout=5)
        return "WWW-Authenticate" in answer.headers

    while asks_for_a_password():
        assert time.monotonic() < deadline, "nginx did not reload"
        time.sleep(0.2)
    # with permissions on, the tracking server still refuses the anonymous request itself
    assert requests.post(api, json={"max_results": 1}, timeout=5).status_code == 401
    try:
        _fails(stack, ("proxy", "anonymous refused"), detail="lets anyone in")
    finally:
        site.write_text(original)
        os.kill(stack.pid("nginx"), signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not asks_for_a_password():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert stack.doctor()[0] == 0


def test_public_host_unknown_to_the_server(stack: Stack) -> None:
    """Clients use a name the server was not started with: MLflow answers 403."""
    unknown = "http://mlflow.example.org"
    _fails(stack, ("proxy", "public host"), remedy="MLOPS_PUBLIC_URL", MLOPS_PUBLIC_URL=unknown)


def test_proxy_body_limit_of_1_mb(stack: Stack) -> None:
    site = stack.settings.state_dir / "nginx" / "conf.d" / "mlflow.conf"
    original = site.read_text()
    assert "client_max_body_size" in original
    site.write_text(re.sub(r"client_max_body_size [^;]+;", "client_max_body_size 1m;", original))
    os.kill(stack.pid("nginx"), signal.SIGHUP)
    try:
        deadline = time.monotonic() + 15
        while True:
            code, _, findings = stack.doctor()
            if ("proxy", "body over 1 MB") in findings or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert code == 2
        body = findings[("proxy", "body over 1 MB")]
        assert body["status"] == "fail" and "MLOPS_PROXY_BODY_SIZE" in body["remedy"]
    finally:
        site.write_text(original)
        os.kill(stack.pid("nginx"), signal.SIGHUP)
    deadline = time.monotonic() + 15
    while stack.doctor()[0] != 0:
        assert time.monotonic() < deadline, "the proxy did not recover"
        time.sleep(0.5)


def test_probes_and_bad_settings(stack: Stack) -> None:
    assert stack.cli("health", "live").returncode == 0
    ready = stack.cli("health", "ready", "--json")
    assert ready.returncode == 0, ready.stdout
    bad = stack.cli("doctor", "--json", MLOPS_DB_PORT="not-a-port")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    finding = json.loads(bad.stdout)["findings"][0]
    assert finding["component"] == "settings" and "MLOPS_DB_PORT" in finding["detail"]
    down = stack.cli("health", "ready", MLOPS_DB_PORT="1", MLOPS_SERVER_PORT="1")
    assert down.returncode == 2
    assert "FAIL tracking live" in down.stdout and "FAIL database reachable" in down.stdout


def test_healthcheck_scripts(stack: Stack) -> None:
    """The compose/Kubernetes probes: exit 0 or 1 (Docker reserves 2)."""
    import subprocess
    import sys

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in ("healthcheck-live", "healthcheck-ready"):
        ok = subprocess.run(
            [str(scripts / name), "--env-file", str(stack.env_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = subprocess.run(
            [str(scripts / name), "--env-file", str(stack.env_file)],
            env={**env, "MLOPS_SERVER_PORT": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 1 and "FAIL tracking live" in bad.stdout
