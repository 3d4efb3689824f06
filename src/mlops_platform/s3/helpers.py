"""What every S3 caller needs: a failed call's error code, a listing across pages, a
batch delete. Plain functions of a boto3 client; no settings, no boto3 import."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys a call
NO_BUCKET = ("404", "NoSuchBucket", "NotFound")


def error_code(exc: BaseException) -> str:
    """The S3 error code of a failed call (``NoSuchBucket``, ``AccessDenied``, ``404``),
    else its HTTP status, else ``""`` (not a ``ClientError``)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode"
    )
    return str(code or "")


def error_text(exc: BaseException) -> str:
    """One line saying why a call failed: ``code: message`` of a ``ClientError``, else the
    first line of the exception."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message", "")
        return f"{error_code(exc)}: {message}".rstrip(": ")
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def list_pages(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every ``ListObjectsV2`` page of the objects under ``prefix`` (1,000 a page), in
    order; a failed call raises as boto3 does."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        yield page
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def iter_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under ``prefix`` (``Key``, ``Size``, ``ETag``, ``LastModified``)."""
    for page in list_pages(client, bucket, prefix):
        yield from page.get("Contents", [])


def delete_keys(client: Any, bucket: str, keys: Iterable[str]) -> int:
    """Delete ``keys`` with ``DeleteObjects``, 1,000 a call; how many were asked for."""
    keys = list(keys)
    for i in range(0, len(keys), DELETE_BATCH):
        batch = keys[i : i + DELETE_BATCH]
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
    return len(keys)
