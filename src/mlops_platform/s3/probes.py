"""The store's probes: who may read the bucket, real round trips (plain, multipart,
presigned), and the bucket's lifecycle and encryption settings."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.checks import CheckResult, Status
from mlops_platform.s3.helpers import error_code, error_text
from mlops_platform.settings import PlatformSettings

PROBE_PREFIX = ".mlops-platform-probe"
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
KEY_FIX = "check MLOPS_S3_ACCESS_KEY_ID / MLOPS_S3_SECRET_ACCESS_KEY (the store's identity file)"


def check(
    name: str, status: Status, detail: str, remedy: str = "", seconds: float = 0.0
) -> CheckResult:
    """One check of the store (component ``s3``)."""
    return CheckResult("s3", name, status, detail, remedy, seconds)


def _round_trip(
    name: str, same: bool, passed: str, failed: str, remedy: str, start: float
) -> CheckResult:
    """A round trip that read back what it wrote (``ok``, PASSED) or other bytes (``fail``,
    FAILED and REMEDY), timed from START."""
    if same:
        return check(name, "ok", passed, seconds=time.monotonic() - start)
    return check(name, "fail", failed, remedy, seconds=time.monotonic() - start)


def privacy_checks(settings: PlatformSettings, s3: Any, timeout: float) -> list[CheckResult]:
    bucket = settings.s3_bucket
    out: list[CheckResult] = []
    fix = f"run `mlops-platform s3 apply-policy` after removing public access: {_private_fix()}"
    try:
        policy = s3.get_bucket_policy(Bucket=bucket).get("Policy", "")
        public = _policy_is_public(policy)
        out.append(
            check(
                "policy",
                "fail" if public else "ok",
                "bucket policy grants access to everyone"
                if public
                else "policy grants no public access",
                fix if public else "",
            )
        )
    except ClientError as exc:
        code = error_code(exc)
        if code in ("NoSuchBucketPolicy", "404", "NotImplemented"):
            out.append(check("policy", "ok", "no bucket policy"))
        else:
            out.append(check("policy", "warn", f"cannot read the policy ({code})"))
    try:
        grants = s3.get_bucket_acl(Bucket=bucket).get("Grants", [])
        public_grants = [
            g.get("Permission", "")
            for g in grants
            if g.get("Grantee", {}).get("URI") in PUBLIC_GROUPS
        ]
        out.append(
            check(
                "acl",
                "fail" if public_grants else "ok",
                f"ACL grants everyone {', '.join(public_grants)}"
                if public_grants
                else "ACL is private",
                fix if public_grants else "",
            )
        )
    except ClientError as exc:
        out.append(check("acl", "warn", f"cannot read the ACL ({error_code(exc)})"))
    # What an anonymous client really gets, whatever the policy documents say.
    anon = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        config=Config(
            signature_version=UNSIGNED,
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1},
        ),
    )
    try:
        anon.list_objects_v2(Bucket=bucket, MaxKeys=1)
        out.append(check("anonymous", "fail", "an anonymous client can list the bucket", fix))
    except ClientError:
        out.append(check("anonymous", "ok", "anonymous listing refused"))
    except BotoCoreError as exc:
        out.append(check("anonymous", "warn", f"anonymous probe failed: {error_text(exc)}"))
    return out


def _private_fix() -> str:
    return "`aws s3api delete-bucket-policy` and `put-bucket-acl --acl private` on the bucket"


def _policy_is_public(policy: str) -> bool:
    try:
        document = json.loads(policy) if policy else {}
    except ValueError:
        return False
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if principal == "*" or (
            isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"])
        ):
            return True
    return False


def round_trips(settings: PlatformSettings, s3: Any, *, quick: bool) -> list[CheckResult]:
    bucket = settings.s3_bucket
    out: list[CheckResult] = []
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
    body = os.urandom(64 * 1024)
    digest = hashlib.sha256(body).hexdigest()
    write_fix = "grant the key s3:PutObject, s3:GetObject and s3:DeleteObject on the bucket"
    start = time.monotonic()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except (ClientError, BotoCoreError) as exc:
        out.append(check("write", "fail", f"cannot write {key} ({error_text(exc)})", write_fix))
        return out
    try:
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        same = hashlib.sha256(got).hexdigest() == digest
        out.append(
            _round_trip(
                "write-read-delete",
                same,
                "64 KiB round trip, sha256 matches",
                "the object read back differs",
                "the store corrupts data: check its disks and logs",
                start,
            )
        )
    except (ClientError, BotoCoreError) as exc:
        out.append(
            check("write-read-delete", "fail", f"cannot read back ({error_text(exc)})", write_fix)
        )
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            out.append(
                check("delete", "fail", f"cannot delete {key} ({error_text(exc)})", write_fix)
            )
    if quick:
        return out
    out.append(_multipart(s3, bucket))
    out.append(_presigned(s3, bucket))
    return out


def _multipart(s3: Any, bucket: str) -> CheckResult:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-multipart"
    parts_data = [os.urandom(5 * 1024 * 1024), os.urandom(1024)]
    start = time.monotonic()
    upload_id = None
    try:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, data in enumerate(parts_data, start=1):
            etag = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        upload_id = None
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        ok = hashlib.sha256(got).digest() == hashlib.sha256(b"".join(parts_data)).digest()
        return _round_trip(
            "multipart",
            ok,
            "2-part upload (5 MiB + 1 KiB), sha256 matches",
            "assembled object differs",
            "the store assembles multipart uploads wrongly: check its version",
            start,
        )
    except (ClientError, BotoCoreError) as exc:
        return check(
            "multipart",
            "fail",
            f"multipart upload failed ({error_text(exc)})",
            "large artifacts will fail: grant s3:AbortMultipartUpload/ListMultipartUploadParts "
            "and check the store's limits",
        )
    finally:
        if upload_id:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass


def _presigned(s3: Any, bucket: str) -> CheckResult:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-presigned"
    body = os.urandom(1024)
    start = time.monotonic()
    try:
        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        get_url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        request = urllib.request.Request(put_url, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
        with urllib.request.urlopen(get_url, timeout=10) as response:  # noqa: S310
            got = response.read()
        return _round_trip(
            "presigned",
            got == body,
            "presigned PUT then GET round trip",
            "presigned GET returned other bytes",
            "",
            start,
        )
    except (urllib.error.URLError, OSError, ClientError, BotoCoreError) as exc:
        return check(
            "presigned",
            "fail",
            f"presigned URL round trip failed ({exc})",
            "direct artifact access needs presigned URLs: check the clock (skew) and "
            "MLOPS_S3_REGION / MLOPS_S3_PATH_STYLE",
        )
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass


def policy_checks(s3: Any, bucket: str) -> list[CheckResult]:
    out: list[CheckResult] = []
    fix = "run `mlops-platform s3 apply-policy`"
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        ours = [r for r in rules if r.get("AbortIncompleteMultipartUpload")]
        out.append(
            check(
                "lifecycle",
                "ok" if ours else "warn",
                f"{len(rules)} rule(s); incomplete uploads aborted"
                if ours
                else f"{len(rules)} rule(s), none aborts incomplete multipart uploads",
                "" if ours else fix,
            )
        )
    except ClientError as exc:
        out.append(check("lifecycle", "warn", f"no lifecycle rule ({error_code(exc)})", fix))
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else ""
        out.append(check("encryption", "ok", f"default encryption {algo}"))
    except (ClientError, KeyError, IndexError) as exc:
        code = error_code(exc) if isinstance(exc, ClientError) else "unreadable"
        out.append(
            check(
                "encryption",
                "warn",
                f"no default server-side encryption ({code})",
                f"{fix} (SeaweedFS needs an SSE key first: s3.sse.kek in security.toml)",
            )
        )
    return out
