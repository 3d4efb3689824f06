"""The artifact store: a correctly configured client, and the private bucket."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.errors import ServiceError
from mlops_platform.settings import PlatformSettings


def client(settings: PlatformSettings, *, timeout: float = 10.0, retries: int = 3) -> Any:
    """A boto3 S3 client for the platform's store (path-style for non-AWS endpoints)."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": retries, "mode": "standard"},
    )
    key_id = settings.s3_access_key_id.get_secret_value() or None
    secret = settings.s3_secret_access_key.get_secret_value() or None
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config,
    )


def ensure_bucket(settings: PlatformSettings) -> bool:
    """Create the artifact bucket if it is missing; True when it was created.

    A new bucket gets no policy and no ACL grant: it is private.
    """
    s3 = client(settings)
    try:
        s3.head_bucket(Bucket=settings.s3_bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ServiceError(
                f"cannot reach bucket {settings.s3_bucket}: {code or exc}",
                fix="check MLOPS_S3_ACCESS_KEY_ID / MLOPS_S3_SECRET_ACCESS_KEY and the "
                "bucket's policy",
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
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise ServiceError(
            f"cannot create bucket {settings.s3_bucket}: {code}",
            fix="create it by hand or grant the key CreateBucket",
        ) from None
    return True


def reachable(settings: PlatformSettings) -> bool:
    """True when the endpoint accepts our credentials."""
    try:
        client(settings, timeout=3, retries=1).list_buckets()
        return True
    except (ClientError, BotoCoreError):
        return False
