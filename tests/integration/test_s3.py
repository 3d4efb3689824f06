"""`s3 diagnose` and `s3 apply-policy` against the session stack's real SeaweedFS.

Faults go to buckets and settings of their own (a second bucket, a wrong secret passed
through the environment), so the shared artifact bucket is never changed. The tracking
server's key may touch the artifact bucket only: the second bucket is made, configured and
diagnosed with the kit's admin key, as an operator would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from mlops_platform import s3
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


def _diagnose(platform: Platform, **env: str):  # type: ignore[no-untyped-def]
    result = platform.cli("s3", "diagnose", "--json", env={**os.environ, **env}, check=False)
    report = json.loads(result.stdout)
    return result.returncode, report, {c["check"]: c for c in report["findings"]}


def _diagnose_as_admin(platform: Platform, **env: str):  # type: ignore[no-untyped-def]
    key_id, secret = platform.settings.s3_credentials("admin")
    keys = {"MLOPS_S3_ACCESS_KEY_ID": key_id, "MLOPS_S3_SECRET_ACCESS_KEY": secret}
    result = platform.cli(
        "s3", "diagnose", "--json", env={**os.environ, **keys, **env}, check=False
    )
    report = json.loads(result.stdout)
    return result.returncode, report, {c["check"]: c for c in report["findings"]}


@pytest.fixture
def spare_bucket(platform: Platform) -> Iterator[str]:
    name = f"diag-{uuid.uuid4().hex[:10]}"
    settings = platform.settings.model_copy(update={"s3_bucket": name})
    assert s3.ensure_bucket(settings)
    try:
        yield name
    finally:
        client = s3.client(settings, purpose="admin")
        for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)


def test_healthy_store_passes_every_hard_check(platform: Platform) -> None:
    code, report, checks = _diagnose(platform)
    assert report["status"] in ("ok", "warn"), report
    assert code in (0, 1)
    for name in (
        "dns",
        "tcp",
        "credentials",
        "bucket",
        "list",
        "policy",
        "acl",
        "anonymous",
        "write-read-delete",
        "multipart",
        "presigned",
        "latency",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    for check in report["findings"]:
        assert check["component"] == "s3", check
        assert check["status"] == "ok" or check["remedy"], check
    assert report["exit_code"] == code  # the doctor's shape: `findings`, `exit_code`
    client = s3.client(platform.settings)
    left = client.list_objects_v2(Bucket=platform.settings.s3_bucket, Prefix=s3.PROBE_PREFIX)
    assert left.get("KeyCount", 0) == 0, "probe objects were left behind"


def test_wrong_secret_is_named(platform: Platform) -> None:
    code, report, checks = _diagnose(platform, MLOPS_S3_SECRET_ACCESS_KEY="x" * 40)
    assert code == 2 and report["status"] == "fail"
    assert checks["credentials"]["status"] == "fail"
    assert "MLOPS_S3_SECRET_ACCESS_KEY" in checks["credentials"]["remedy"]


def test_missing_bucket_is_named(platform: Platform) -> None:
    code, _, checks = _diagnose(platform, MLOPS_S3_BUCKET="no-such-bucket-here")
    assert code == 2
    assert checks["bucket"]["status"] == "fail"
    assert "does not exist" in checks["bucket"]["detail"]


def test_unreachable_endpoint_is_a_diagnosis_not_a_traceback(platform: Platform) -> None:
    code, _, checks = _diagnose(platform, MLOPS_S3_ENDPOINT_URL="http://127.0.0.1:1")
    assert code == 2
    assert checks["tcp"]["status"] == "fail" and "MLOPS_S3_ENDPOINT_URL" in checks["tcp"]["remedy"]
    code, _, checks = _diagnose(platform, MLOPS_S3_ENDPOINT_URL="http://no-such-host.invalid:9000")
    assert code == 2 and "does not resolve" in checks["dns"]["detail"]
    human = platform.cli(
        "s3",
        "diagnose",
        env={**os.environ, "MLOPS_S3_ENDPOINT_URL": "http://127.0.0.1:1"},
        check=False,
    )
    assert human.returncode == 2 and "Traceback" not in human.stderr + human.stdout


def test_public_bucket_fails_the_privacy_checks(platform: Platform, spare_bucket: str) -> None:
    settings = platform.settings.model_copy(update={"s3_bucket": spare_bucket})
    client = s3.client(settings, purpose="admin")
    client.put_bucket_acl(Bucket=spare_bucket, ACL="public-read")
    code, report, checks = _diagnose_as_admin(platform, MLOPS_S3_BUCKET=spare_bucket)
    assert code == 2 and report["status"] == "fail"
    assert checks["acl"]["status"] == "fail" and "everyone" in checks["acl"]["detail"]
    assert checks["anonymous"]["status"] == "fail"
    client.put_bucket_acl(Bucket=spare_bucket, ACL="private")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{spare_bucket}/*"],
            }
        ],
    }
    client.put_bucket_policy(Bucket=spare_bucket, Policy=json.dumps(policy))
    code, _, checks = _diagnose_as_admin(platform, MLOPS_S3_BUCKET=spare_bucket)
    assert code == 2 and checks["policy"]["status"] == "fail"


def test_apply_policy_is_idempotent_and_never_breaks_writes(
    platform: Platform, spare_bucket: str
) -> None:
    env = {**os.environ, "MLOPS_S3_BUCKET": spare_bucket}
    first = platform.cli("s3", "apply-policy", "--json", env=env, check=False)
    assert first.returncode in (0, 1), first.stderr
    done = json.loads(first.stdout)
    assert done["lifecycle"] == "set"
    assert done["encryption"] in ("set", "unsupported")
    second = json.loads(platform.cli("s3", "apply-policy", "--json", env=env, check=False).stdout)
    assert second["lifecycle"] == "skipped"
    _, _, checks = _diagnose_as_admin(platform, MLOPS_S3_BUCKET=spare_bucket)
    assert checks["lifecycle"]["status"] == "ok"
    assert checks["write-read-delete"]["status"] == "ok", "apply-policy broke writes"
    missing = platform.cli(
        "s3", "apply-policy", env={**os.environ, "MLOPS_S3_BUCKET": "no-such-bucket-x"}, check=False
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: bucket no-such-bucket-x")


def test_the_servers_key_reaches_no_other_bucket(platform: Platform, spare_bucket: str) -> None:
    """The tracking server's key is scoped to its bucket: another one is a named refusal."""
    code, _, checks = _diagnose(platform, MLOPS_S3_BUCKET=spare_bucket)
    assert code == 2
    assert checks["credentials"]["status"] == "ok"
    assert checks["bucket"]["status"] == "fail", checks["bucket"]
    assert "no access to bucket" in checks["bucket"]["detail"]
    assert "MLOPS_S3_ACCESS_KEY_ID" in checks["bucket"]["remedy"]
    code, _, checks = _diagnose_as_admin(platform, MLOPS_S3_BUCKET=spare_bucket)  # control
    assert checks["bucket"]["status"] == "ok", checks["bucket"]
