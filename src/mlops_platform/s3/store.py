"""A correctly configured client for the platform's store, and its private bucket."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.errors import ServiceError
from mlops_platform.s3.helpers import NO_BUCKET, error_code
from mlops_platform.settings import PlatformSettings, S3Purpose


def client(
    settings: PlatformSettings,
    *,
    timeout: float = 10.0,
    retries: int = 3,
    purpose: S3Purpose = "server",
) -> Any:
    """A boto3 S3 client for the platform's store (path-style for non-AWS endpoints).

    ``purpose`` picks the key: ``server`` (the tracking server's, scoped to the bucket),
    ``admin`` (the kit's bucket creation and configuration) or ``backup`` (read-only).
    """
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": retries, "mode": "standard"},
    )
    key_id, secret = settings.s3_credentials(purpose)
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        config=config,
    )


def endpoint_display(settings: PlatformSettings) -> str:
    return settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com"


def ensure_bucket(settings: PlatformSettings) -> bool:
    """Create the artifact bucket if it is missing; True when it was created.

    A new bucket gets no policy and no ACL grant: it is private. Done with the admin key.
    """
    s3 = client(settings, purpose="admin")
    try:
        s3.head_bucket(Bucket=settings.s3_bucket)
        return False
    except ClientError as exc:
        code = error_code(exc)
        if code not in NO_BUCKET:
            raise ServiceError(
                f"cannot reach bucket {settings.s3_bucket}: {code or exc}",
                fix="check MLOPS_S3_ADMIN_ACCESS_KEY_ID / MLOPS_S3_ADMIN_SECRET_ACCESS_KEY "
                "(else MLOPS_S3_ACCESS_KEY_ID) and the bucket's policy",
            ) from None
    except BotoCoreError as exc:
        raise ServiceError(
            f"cannot reach the S3 endpoint {settings.s3_endpoint}: {exc}",
            fix="check MLOPS_S3_ENDPOINT_URL",
        ) from None
    kwargs: dict[str, Any] = {"Bucket": settings.s3_bucket}
    if settings.s3_region != "us-east-1" and settings.object_store == "external":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise ServiceError(
            f"cannot create bucket {settings.s3_bucket}: {code}",
            fix="create it by hand or grant the key CreateBucket",
        ) from None
    return True


def reachable(settings: PlatformSettings) -> bool:
    """True when the endpoint accepts the kit's (admin) credentials."""
    try:
        client(settings, timeout=3, retries=1, purpose="admin").list_buckets()
        return True
    except (ClientError, BotoCoreError):
        return False
