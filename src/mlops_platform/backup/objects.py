"""The artifact side: list the store, pick what belongs to a snapshot, copy one object."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform import s3
from mlops_platform.backup.common import CHUNK, RUN_ID, BackupError, Reporter
from mlops_platform.backup.locations import safe_relative
from mlops_platform.backup.snapshot import Snapshot
from mlops_platform.settings import PlatformSettings


@dataclass(frozen=True)
class StoreObject:
    key: str
    size: int
    etag: str
    modified: dt.datetime


def list_objects(settings: PlatformSettings, client: Any) -> tuple[list[StoreObject], dt.datetime]:
    """Every object under the artifact prefix, and the store's clock (its ``Date`` header)."""
    out: list[StoreObject] = []
    store_now: dt.datetime | None = None
    try:
        for page in s3.list_pages(client, settings.s3_bucket, settings.s3_prefix + "/"):
            if store_now is None:
                date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
                store_now = email.utils.parsedate_to_datetime(date) if date else None
            for item in page.get("Contents", []):
                out.append(
                    StoreObject(
                        str(item["Key"]),
                        int(item["Size"]),
                        str(item.get("ETag", "")).strip('"'),
                        item["LastModified"],
                    )
                )
    except ClientError as exc:
        code = s3.error_code(exc)
        if code in ("NoSuchBucket", "404"):
            return [], store_now or dt.datetime.now(dt.timezone.utc)
        raise BackupError(
            f"cannot list s3://{settings.s3_bucket}/{settings.s3_prefix}: {code or exc}",
            fix="check MLOPS_S3_* settings (`mlops-platform s3 diagnose`)",
        ) from None
    except BotoCoreError as exc:
        raise BackupError(
            f"cannot reach the S3 endpoint {settings.s3_endpoint}: {exc}",
            fix="start the object store or fix MLOPS_S3_ENDPOINT_URL",
        ) from None
    return out, store_now or dt.datetime.now(dt.timezone.utc)


def owner(rel: str) -> tuple[str, str] | None:
    """What a key below the prefix belongs to: (kind, id), or None for an unknown layout.

    MLflow lays artifacts out as ``<exp>/<run_id>/...``, ``<exp>/models/<model_id>/...``,
    ``<exp>/traces/<trace_id>/...`` and ``<exp>/...``.
    """
    parts = rel.split("/")
    if len(parts) >= 3 and RUN_ID.match(parts[1]):
        return ("run", parts[1])
    if len(parts) >= 4 and parts[1] == "models":
        return ("logged_model", parts[2])
    if len(parts) >= 4 and parts[1] == "traces":
        return ("trace", parts[2])
    if len(parts) >= 2 and parts[0].isdigit():
        return ("experiment", parts[0])
    return None


@dataclass
class Selection:
    included: list[StoreObject]
    newer: int
    unreferenced: int
    unsafe: list[str]


def select_objects(
    objects: list[StoreObject], snap: Snapshot, prefix: str, cutoff: dt.datetime
) -> Selection:
    """The objects that belong to the snapshot: owned by an entity it holds, written before it.

    ``cutoff`` is the snapshot time on the store's clock. LastModified has one-second
    precision, so an object stamped within that second is kept (an extra file of a run
    the dump holds is harmless; a missing file of a model version it holds is not).
    """
    sets = {
        "run": snap.runs,
        "logged_model": snap.logged_models,
        "trace": snap.traces,
        "experiment": snap.experiments,
    }
    limit = cutoff + dt.timedelta(seconds=1)
    sel = Selection([], 0, 0, [])
    for obj in objects:
        rel = safe_relative(obj.key, prefix)
        if rel is None:
            sel.unsafe.append(obj.key)
            continue
        who = owner(rel)
        if who is not None and who[1] not in sets[who[0]]:
            sel.unreferenced += 1
            continue
        if obj.modified > limit:
            sel.newer += 1
            continue
        sel.included.append(obj)
    return sel


def download_object(
    client: Any, bucket: str, obj: StoreObject, dest: Path, report: Reporter
) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = dest.with_name(dest.name + ".part")
    response = client.get_object(Bucket=bucket, Key=obj.key)
    body = response["Body"]
    with open(tmp, "wb") as f:
        for chunk in iter(lambda: body.read(CHUNK), b""):
            f.write(chunk)
            digest.update(chunk)
            report.advance(len(chunk))
    size = tmp.stat().st_size
    if size != obj.size:
        tmp.unlink(missing_ok=True)
        raise BackupError(
            f"s3 object {obj.key} changed while being copied ({size} bytes, listed {obj.size})",
            fix="run `mlops-platform backup create` again",
        )
    tmp.replace(dest)
    return digest.hexdigest()


def link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def upload_object(client: Any, bucket: str, key: str, file: Path, report: Reporter) -> None:
    client.upload_file(str(file), bucket, key, Callback=report.advance)
