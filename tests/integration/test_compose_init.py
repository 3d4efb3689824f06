"""The compose `init` service's program, run for real against the stack's SeaweedFS.

docker-compose.yaml's one-shot `init` creates the artifact bucket private and sets the
lifecycle rule with the kit's own code; here the very text of its command runs against
a real S3 server (no container engine needed), twice: the second run changes nothing.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_platform import s3
from tests.integration.conftest import Platform
from tests.support import proc

ROOT = Path(__file__).resolve().parents[2]


def init_program() -> str:
    service = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]["init"]
    assert service["entrypoint"] == ["python", "-c"]
    return str(service["command"][0])


def run_init(platform: Platform, bucket: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = proc.clean_env(MLOPS_ENV_FILE=str(platform.env_file), MLOPS_S3_BUCKET=bucket)
    return proc.run([sys.executable, "-c", init_program()], env=env, cwd=cwd, timeout=120)


def test_compose_init_creates_a_private_bucket_with_the_lifecycle_rule(
    platform: Platform, tmp_path: Path
) -> None:
    bucket = f"compose-init-{secrets.token_hex(4)}"
    settings = platform.settings.model_copy(update={"s3_bucket": bucket})
    client = s3.client(settings, purpose="admin")  # the kit's bucket work: not the server's key
    try:
        first = run_init(platform, bucket, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"bucket {bucket}: created, private" in first.stdout
        assert "lifecycle: set" in first.stdout

        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        rule = next(r for r in rules if r["ID"] == s3.LIFECYCLE_RULE_ID)
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
        with pytest.raises(ClientError):
            client.get_bucket_policy(Bucket=bucket)
        anonymous = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
        )
        with pytest.raises(ClientError):
            anonymous.list_objects_v2(Bucket=bucket)

        second = run_init(platform, bucket, tmp_path)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"bucket {bucket}: exists, skipped" in second.stdout
        assert "lifecycle: skipped" in second.stdout
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


def test_compose_init_fails_in_one_line_on_a_bad_setting(
    platform: Platform, tmp_path: Path
) -> None:
    result = run_init(platform, "Not_A_Bucket", tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "MLOPS_S3_BUCKET" in result.stderr


def test_compose_postgres_creates_the_auth_database_owned_by_the_tracking_role(
    platform: Platform,
) -> None:
    """scripts/postgres-auth-db, as the postgres image runs it at first start, for real.

    In compose the tracking role is the image's POSTGRES_USER, which may create databases;
    here that right is lent to the stack's role for the test.
    """
    volumes = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]["postgres"]
    assert (
        "./scripts/postgres-auth-db:/docker-entrypoint-initdb.d/10-mlops-auth-db.sh:ro"
        in volumes["volumes"]
    )
    settings = platform.settings
    role = settings.db_user
    name = f"auth_{secrets.token_hex(4)}"
    env = {
        "PGHOST": settings.db_host,
        "PGPORT": str(settings.db_port),
        "PGPASSWORD": settings.db_password.get_secret_value(),
        "POSTGRES_USER": role,
        "POSTGRES_DB": settings.db_name,
        "MLOPS_AUTH_DB_NAME": name,
    }

    def run() -> subprocess.CompletedProcess[str]:
        return proc.run_with_path(
            ["sh", str(ROOT / "scripts" / "postgres-auth-db")], env, timeout=60
        )

    owner_sql = f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'"
    platform.superuser_sql(f'ALTER ROLE "{role}" CREATEDB')
    try:
        first = run()
        assert first.returncode == 0, first.stdout + first.stderr
        assert platform.superuser_sql(owner_sql) == role
        second = run()  # an existing one is kept
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"database {name} ready" in second.stdout
        assert platform.superuser_sql(owner_sql) == role
    finally:
        platform.superuser_sql(f'ALTER ROLE "{role}" NOCREATEDB')
        platform.superuser_sql(f'DROP DATABASE IF EXISTS "{name}"')
