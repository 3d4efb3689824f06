"""Secrets hygiene beyond argv and logs: backups and error messages never carry a secret.

(The process list and every service log are checked in tests/integration/test_stack.py;
`config show` and `init` in tests/unit/test_cli.py.)
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from mlops_platform.settings import SECRET_FIELDS
from tests.conftest import free_port
from tests.integration.conftest import Platform, make_stack_dir, run_cli

pytestmark = pytest.mark.integration


def secrets_of(platform: Platform) -> dict[str, str]:
    values = {name: getattr(platform.settings, name).get_secret_value() for name in SECRET_FIELDS}
    assert all(len(v) >= 12 for v in values.values()), "the session stack has generated secrets"
    return values


def assert_clean(text: str, secrets: dict[str, str], where: str) -> None:
    for name, value in secrets.items():
        assert value not in text, f"{name} appears in {where}"


def test_a_backup_holds_no_secret(platform: Platform, tmp_path: Path) -> None:
    import mlflow

    os.environ.update(platform.client_env)
    client = mlflow.MlflowClient(platform.client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"secrets-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "p", "v")
    client.set_terminated(run.info.run_id)

    backups = make_stack_dir("mlops-secrets-backup-")
    env = {**os.environ, "MLOPS_BACKUP_DIR": str(backups)}
    result = platform.cli("backup", "create", "--json", env=env, timeout=600)
    secrets = secrets_of(platform)
    assert_clean(result.stdout + result.stderr, secrets, "`backup create` output")
    files = [p for p in backups.rglob("*") if p.is_file()]
    manifests = [p for p in files if p.suffix == ".json"]
    assert manifests, f"no manifest among {files}"
    assert json.loads(manifests[0].read_text())  # a real manifest, read as text below
    for path in files:
        # The dump is compressed; its bytes are scanned all the same.
        assert_clean(path.read_bytes().decode("latin-1"), secrets, str(path))
    listing = platform.cli("backup", "list", "--json", env=env)
    assert_clean(listing.stdout + listing.stderr, secrets, "`backup list` output")


def test_errors_name_the_problem_without_the_secret(platform: Platform) -> None:
    """Services that cannot be reached: each command fails cleanly, and no secret leaks."""
    secrets = secrets_of(platform)
    closed = str(free_port())
    broken = make_stack_dir("mlops-secrets-env-")
    env_file = broken / ".env"
    env_file.write_text(
        platform.env_file.read_text()
        + f"MLOPS_DB_PORT={closed}\nMLOPS_S3_PORT={free_port()}\nMLOPS_DB_WAIT_SECONDS=1\n"
    )
    tried = 0
    for args in (
        ("db", "status"),
        ("db", "indexes", "list"),
        ("s3", "diagnose"),
        ("doctor", "--json"),
        ("backup", "create"),
        ("config", "show", "--json"),
        ("config", "check"),
    ):
        result = run_cli(env_file, *args, timeout=120)
        out = result.stdout + result.stderr
        assert "Traceback" not in out, f"{' '.join(args)}: {out[-2000:]}"
        assert_clean(out, secrets, f"`{' '.join(args)}` output")
        tried += 1
    # A database URL with the password inline, wrong host: the message hides it too.
    password = secrets["db_password"]
    url_env = {"MLOPS_DB_URL": f"postgresql://mlflow:{password}@127.0.0.1:{closed}/mlflow"}
    for args in (("db", "status"), ("config", "show")):
        result = run_cli(env_file, *args, env=url_env, timeout=120)
        assert_clean(result.stdout + result.stderr, secrets, f"`{' '.join(args)}` with a URL")
        tried += 1
    assert tried == 9
