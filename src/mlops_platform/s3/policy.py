"""``s3 apply-policy``: the bucket's lifecycle rule and default encryption, idempotent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.errors import ServiceError
from mlops_platform.s3.helpers import NO_BUCKET, error_code, error_text
from mlops_platform.s3.probes import KEY_FIX, PROBE_PREFIX
from mlops_platform.s3.store import client, endpoint_display
from mlops_platform.settings import PlatformSettings

LIFECYCLE_RULE_ID = "mlops-platform-abort-incomplete-uploads"
ABORT_AFTER_DAYS = 7


@dataclass(frozen=True)
class PolicyResult:
    lifecycle: str  # set | skipped
    encryption: str  # set | skipped | unsupported (set, writes failed, removed again)

    def as_dict(self) -> dict[str, str]:
        return {"lifecycle": self.lifecycle, "encryption": self.encryption}


def _lifecycle_rule() -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_AFTER_DAYS},
    }


def _write_works(s3: Any, bucket: str) -> bool:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-policy"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"probe")
    except (ClientError, BotoCoreError):
        return False
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError):
        pass
    return True


def apply_policy(settings: PlatformSettings) -> PolicyResult:
    """Set the abort-incomplete-uploads lifecycle rule and AES256 default encryption.

    Idempotent: what is already there is skipped; other lifecycle rules are kept.
    Done with the admin key.
    """
    s3 = client(settings, purpose="admin")
    bucket = settings.s3_bucket
    _require_bucket(settings, s3)
    try:
        return PolicyResult(_set_lifecycle(s3, bucket), _set_encryption(s3, bucket))
    except ClientError as exc:
        raise ServiceError(
            f"cannot set the bucket's policy ({error_text(exc)})",
            fix="grant the key s3:PutLifecycleConfiguration and s3:PutEncryptionConfiguration",
        ) from None


def _require_bucket(settings: PlatformSettings, s3: Any) -> None:
    bucket = settings.s3_bucket
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in NO_BUCKET:
            raise ServiceError(
                f"bucket {bucket} does not exist", fix="run `mlops-platform up` or create it"
            ) from None
        raise ServiceError(f"no access to bucket {bucket} ({code})", fix=KEY_FIX) from None
    except BotoCoreError as exc:
        raise ServiceError(
            f"cannot reach the S3 endpoint {endpoint_display(settings)}: {error_text(exc)}",
            fix="check MLOPS_S3_ENDPOINT_URL",
        ) from None


def _set_lifecycle(s3: Any, bucket: str) -> str:
    """Add the kit's rule to the bucket's own ones: ``set`` or ``skipped``."""
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchLifecycleConfiguration", "404"):
            raise
        rules = []
    if any(r.get("ID") == LIFECYCLE_RULE_ID for r in rules):
        return "skipped"
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*rules, _lifecycle_rule()]}
    )
    return "set"


def _set_encryption(s3: Any, bucket: str) -> str:
    """AES256 by default where none is set: ``set``, ``skipped`` or ``unsupported``."""
    try:
        s3.get_bucket_encryption(Bucket=bucket)
        return "skipped"
    except ClientError as exc:
        if error_code(exc) not in ("ServerSideEncryptionConfigurationNotFoundError", "404"):
            raise
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    if not _write_works(s3, bucket):
        # SeaweedFS without an SSE key (s3.sse.kek) accepts the setting, then fails
        # every write: never leave the store in that state.
        s3.delete_bucket_encryption(Bucket=bucket)
        return "unsupported"
    return "set"
