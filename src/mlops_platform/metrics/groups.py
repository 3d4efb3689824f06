"""The exporter's collection groups (checks, inventory, storage, backup): each returns its
samples; a failure raises, and the collector keeps it as the group's error.

Only the standard library, psycopg and the kit's leaves at import time: the doctor's
checks (SQLAlchemy), boto3 and the backup listing are imported inside the groups that
the resident exporter leaves to its short-lived child.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mlops_platform.checks import DOCTOR_PROBE_FOLDER
from mlops_platform.metrics.sigv4 import S3_NS, s3_get
from mlops_platform.settings import PlatformSettings

STATUS_VALUE = {"ok": 0.0, "warn": 1.0, "fail": 2.0}
DEFAULT_INTERVALS = {"checks": 60.0, "inventory": 300.0, "storage": 900.0, "backup": 300.0}
# The tracking database's tables counted by `mlops_tracking_objects{kind}`.
COUNTED = {
    "experiments": "SELECT count(*) FROM experiments WHERE lifecycle_stage = 'active'",
    "runs": "SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'",
    "registered_models": "SELECT count(*) FROM registered_models",
    "model_versions": "SELECT count(*) FROM model_versions",
}


@dataclass(frozen=True)
class Sample:
    """One value of one series."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def collect_checks(settings: PlatformSettings, skip: Iterable[str] = ()) -> list[Sample]:
    """The doctor's checks: one status and one duration series per check. ``skip``: the
    doctor's check groups (``health.CHECKS``: settings, database, s3, tracking, proxy,
    disk) this exporter cannot run where it is (compose's, which only nginx lets reach the
    tracking server)."""
    from mlops_platform import health

    findings = health.doctor(settings, skip=skip).findings
    out: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.component, finding.check)
        if finding.status not in STATUS_VALUE or key in seen:
            continue  # a skipped check has no status; a repeated one keeps its first row
        seen.add(key)
        labels = {"component": finding.component, "check": finding.check}
        out.append(Sample("check_status", STATUS_VALUE[finding.status], labels))
        out.append(Sample("check_duration_seconds", finding.seconds, labels))
    return out


def collect_inventory(settings: PlatformSettings) -> list[Sample]:
    """Counts, database size and the schema's distance to MLflow's head: one psycopg
    connection, no SQLAlchemy, no MLflow import (MLflow's migration chain is read from its
    files once, :mod:`mlops_platform.migrations`)."""
    import psycopg

    url = settings.database_url(with_password=True).replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_database(), pg_database_size(current_database()),"
            " to_regclass('alembic_version') IS NOT NULL,"
            " (SELECT count(*) FROM pg_catalog.pg_tables"
            "  WHERE schemaname = current_schema() AND tablename <> 'alembic_version')"
        ).fetchone()
        assert row is not None
        name, size, versioned, tables = row
        current = None
        if versioned:
            found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            current = str(found[0]) if found else None
        counts = {}
        if tables:
            for kind, sql in COUNTED.items():
                found = conn.execute(sql).fetchone()  # type: ignore[arg-type]
                counts[kind] = float(found[0] if found else 0)
    out = [
        Sample("database_migrations_pending", float(pending_migrations(current, empty=not tables))),
        Sample("database_size_bytes", float(size or 0), {"database": str(name)}),
    ]
    out += [Sample("tracking_objects", value, {"kind": kind}) for kind, value in counts.items()]
    return out


def pending_migrations(current: str | None, *, empty: bool = False) -> int:
    """Migrations between ``current`` and MLflow's head: all of them on an empty schema,
    0 at the head or at a revision this MLflow does not know (a newer schema)."""
    from mlops_platform.migrations import tracking_chain

    chain = tracking_chain()
    if empty:
        return len(chain.pending(None))
    if current is None:
        return 0
    return len(chain.pending(current))


def collect_storage(settings: PlatformSettings) -> list[Sample]:
    """The bucket's size and object count under the kit's prefix (one listing, 1000 keys a
    page), the doctor's probe left out: the checks group writes and deletes one while this
    exporter runs. Plain signed HTTP with static keys; boto3 (its credential chain: an
    instance role) only when there are none."""
    import xml.etree.ElementTree as ET

    prefix = settings.s3_prefix.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    if not all(settings.s3_credentials("backup")):
        return storage_with_boto3(settings, prefix)
    probes = prefix + DOCTOR_PROBE_FOLDER
    size = objects = 0
    token = ""
    while True:
        params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            params["continuation-token"] = token
        page = ET.fromstring(s3_get(settings, params))
        for item in page.iter(f"{S3_NS}Contents"):
            if (item.findtext(f"{S3_NS}Key") or "").startswith(probes):
                continue
            size += int(item.findtext(f"{S3_NS}Size") or 0)
            objects += 1
        token = page.findtext(f"{S3_NS}NextContinuationToken") or ""
        if page.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
            break
    return [Sample("bucket_size_bytes", float(size)), Sample("bucket_objects", float(objects))]


def storage_with_boto3(settings: PlatformSettings, prefix: str) -> list[Sample]:
    from mlops_platform import s3

    client = s3.client(settings, timeout=10, retries=2, purpose="backup")
    paginator = client.get_paginator("list_objects_v2")
    probes = prefix + DOCTOR_PROBE_FOLDER
    size = objects = 0
    for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].startswith(probes):
                continue
            size += int(obj.get("Size", 0))
            objects += 1
    return [Sample("bucket_size_bytes", float(size)), Sample("bucket_objects", float(objects))]


def collect_backup(settings: PlatformSettings) -> list[Sample]:
    """The newest verified backup: complete (manifest written after every checksum) and
    its dump on disk of the manifest's size. Timestamp 0 when there is none."""
    from mlops_platform import backup

    backups = backup.list_backups(settings)
    stamp = size = 0.0
    for info in reversed(backups):
        dump = info.path / backup.DUMP
        try:
            if dump.stat().st_size != info.dump_bytes:
                continue
        except OSError:
            continue
        stamp = dt.datetime.fromisoformat(info.finished_at).timestamp()
        size = float(info.dump_bytes + info.artifact_bytes)
        break
    return [
        Sample("backup_last_verified_timestamp_seconds", stamp),
        Sample("backup_last_verified_size_bytes", size),
        Sample("backups", float(len(backups))),
    ]


GROUPS: dict[str, Callable[[PlatformSettings], list[Sample]]] = {
    "checks": collect_checks,
    "inventory": collect_inventory,
    "storage": collect_storage,
    "backup": collect_backup,
}
