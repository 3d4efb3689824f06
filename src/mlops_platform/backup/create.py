"""``backup create``: dump the database in a snapshot, copy the artifacts of that snapshot,
write the manifest. Each step is a function below; :func:`create_backup` runs them."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from botocore.exceptions import ClientError

from mlops_platform import __version__, db, s3
from mlops_platform.backup.common import (
    ARTIFACTS,
    AUTH_DUMP,
    DUMP,
    PARTIAL,
    BackupError,
    QuietReporter,
    Reporter,
    sha256_file,
    utc_now,
)
from mlops_platform.backup.locations import (
    backup_lock,
    check_destination,
    check_space,
    new_id,
    previous_backup,
    relative_key,
)
from mlops_platform.backup.manifest import Artifact, Manifest, save_manifest
from mlops_platform.backup.objects import (
    Selection,
    StoreObject,
    download_object,
    link_or_copy,
    list_objects,
    select_objects,
)
from mlops_platform.backup.snapshot import (
    AuthSnapshot,
    Snapshot,
    auth_snapshot,
    dump_snapshot,
    exported_snapshot,
)
from mlops_platform.settings import PlatformSettings
from mlops_platform.units import human_size


@dataclass
class CreateResult:
    id: str
    path: Path
    seconds: float
    dump_seconds: float
    copy_seconds: float
    manifest: Manifest

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id,
            "path": str(self.path),
            "seconds": round(self.seconds, 2),
            "dump_seconds": round(self.dump_seconds, 2),
            "copy_seconds": round(self.copy_seconds, 2),
            "dump_bytes": m.dump_bytes,
            "artifacts": len(m.artifacts),
            "artifact_bytes": m.artifact_bytes,
            "copied": m.copied,
            "linked": m.linked,
            "skipped_newer": m.skipped_newer,
            "skipped_unreferenced": m.skipped_unreferenced,
            "skipped_unsafe": m.skipped_unsafe,
            "row_counts": m.row_counts,
            "previous": m.previous,
            "schema_revision": m.schema_revision,
            "auth_database": m.auth_database,
            "auth_revision": m.auth_revision,
            "auth_dump_bytes": m.auth_dump_bytes,
            "auth_row_counts": m.auth_row_counts,
        }


@dataclass
class _Dumped:
    """What the snapshot step leaves behind: what the snapshot held, and its dump files."""

    snap: Snapshot
    auth: AuthSnapshot | None
    dump: Path
    auth_dump: Path
    dump_sha256: str
    auth_sha256: str | None
    seconds: float
    db_offset: float  # the database's clock minus ours, in seconds


@dataclass
class _CopyPlan:
    """The snapshot's objects: those the previous backup holds unchanged, and the rest."""

    selection: Selection
    to_link: list[tuple[StoreObject, Artifact]]
    to_copy: list[StoreObject]
    previous: Path | None
    skew: float  # the store's clock minus the database's, in seconds

    @property
    def copy_bytes(self) -> int:
        return sum(o.size for o in self.to_copy)


def create_backup(
    settings: PlatformSettings,
    *,
    full: bool = False,
    report: Reporter | None = None,
    before_copy: Callable[[], None] | None = None,
) -> CreateResult:
    """Dump the database in a snapshot, copy the artifacts of that snapshot, write a manifest.

    ``full`` downloads every object even when the previous backup has it.
    ``before_copy`` is a test hook called between the snapshot and the listing.
    """
    say = report or QuietReporter()
    start = time.monotonic()
    started_at = utc_now()
    root = check_destination(settings, create=True)
    with backup_lock(root):
        backup_id = new_id(started_at, {p.name for p in root.iterdir()})
        work = root / (backup_id + PARTIAL)
        prev = None if full else previous_backup(root, settings)
        client = s3.client(settings, timeout=60, purpose="backup")  # read and list only
        try:
            dumped = _dump_in_snapshot(settings, root, work, say)
            if before_copy is not None:
                before_copy()
            plan = _plan_copies(settings, client, dumped, prev)
            check_space(root, plan.copy_bytes)
            copy_start = time.monotonic()
            entries = _copy_objects(settings, client, plan, work, say)
            copy_seconds = time.monotonic() - copy_start
            manifest = _write_manifest(settings, work, backup_id, started_at, dumped, plan, entries)
            final = root / backup_id
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return CreateResult(
        backup_id, final, time.monotonic() - start, dumped.seconds, copy_seconds, manifest
    )


def _dump_in_snapshot(settings: PlatformSettings, root: Path, work: Path, say: Reporter) -> _Dumped:
    """Open the tracking database's snapshot and the auth store's, dump both into ``work``
    (created here) and read the database's clock; the transactions end on return."""
    with (
        exported_snapshot(settings) as (snap, conn),
        auth_snapshot(settings) as auth_snap,
    ):
        size = int(
            conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())")).scalar()
            or 0
        )
        check_space(root, size // 2)  # a -Fc dump is compressed; half is generous
        pg_dump = db.client_binary(settings, "pg_dump", server_version=snap.server_version)
        work.mkdir(mode=0o700)  # the dump and artifacts: the owner's only
        say.message(
            f"snapshot {snap.snapshot_id} at {snap.snapshot_at.isoformat()}: "
            f"{snap.row_counts.get('runs', 0)} runs, "
            f"{snap.row_counts.get('experiments', 0)} experiments"
        )
        dump_start = time.monotonic()
        dump, auth_dump = work / DUMP, work / AUTH_DUMP
        dump_snapshot(settings, settings, pg_dump, dump, snap.snapshot_id, "pg_dump")
        if auth_snap is not None:
            dump_snapshot(
                settings,
                db.auth_settings(settings),
                pg_dump,
                auth_dump,
                auth_snap.snapshot_id,
                f"pg_dump of the auth store {auth_snap.database}",
            )
        else:
            say.message(
                f"no auth store ({settings.auth_db_name} does not exist): "
                "users, roles and grants are not in this backup"
            )
        dump_seconds = time.monotonic() - dump_start
        db_clock = conn.execute(sqlalchemy.text("SELECT clock_timestamp()")).scalar()
        db_offset = (db_clock - utc_now()).total_seconds() if db_clock else 0.0
        # the transaction ends here; the snapshot's data is in the dump
    dumped = _Dumped(
        snap,
        auth_snap,
        dump,
        auth_dump,
        sha256_file(dump),
        sha256_file(auth_dump) if auth_snap is not None else None,
        dump_seconds,
        db_offset,
    )
    say.message(
        f"database dumped: {human_size(dump.stat().st_size)} in {dump_seconds:.1f}s"
        + (
            f"; auth store {auth_snap.database}: {human_size(auth_dump.stat().st_size)}"
            if auth_snap is not None
            else ""
        )
    )
    return dumped


def _plan_copies(
    settings: PlatformSettings,
    client: Any,
    dumped: _Dumped,
    prev: tuple[Path, Manifest] | None,
) -> _CopyPlan:
    """List the store, keep the objects of the snapshot, and split them into those the
    previous backup holds with the same size and ETag (linked) and those to download."""
    local = utc_now()
    objects, store_now = list_objects(settings, client)
    # the store's clock minus the database's, each against ours (the store's Date
    # header has one-second precision)
    skew = float(round((store_now - local).total_seconds() - dumped.db_offset))
    cutoff = dumped.snap.snapshot_at + dt.timedelta(seconds=skew)
    sel = select_objects(objects, dumped.snap, settings.s3_prefix, cutoff)
    prev_files = {a.key: a for a in prev[1].artifacts} if prev is not None else {}
    plan = _CopyPlan(sel, [], [], prev[0] if prev is not None else None, skew)
    for obj in sel.included:
        old = prev_files.get(obj.key)
        if old is not None and old.size == obj.size and old.etag == obj.etag:
            assert plan.previous is not None
            src = plan.previous / ARTIFACTS / relative_key(obj.key, settings)
            if src.is_file() and src.stat().st_size == obj.size:
                plan.to_link.append((obj, old))
                continue
        plan.to_copy.append(obj)
    return plan


def _copy_objects(
    settings: PlatformSettings, client: Any, plan: _CopyPlan, work: Path, say: Reporter
) -> dict[str, Artifact]:
    """Link the unchanged objects from the previous backup, download the others in
    parallel; the manifest entry of each, by key."""
    entries: dict[str, Artifact] = {}
    for obj, old in plan.to_link:
        assert plan.previous is not None
        src = plan.previous / ARTIFACTS / relative_key(obj.key, settings)
        link_or_copy(src, work / ARTIFACTS / relative_key(obj.key, settings))
        entries[obj.key] = old
    say.message(
        f"{len(plan.selection.included)} artifacts: {len(plan.to_link)} unchanged (linked "
        f"from {plan.previous.name if plan.previous else '-'}), {len(plan.to_copy)} to copy "
        f"({human_size(plan.copy_bytes)})"
    )
    say.start("copying artifacts", plan.copy_bytes)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=settings.backup_workers) as pool:
        futures = {
            pool.submit(
                download_object,
                client,
                settings.s3_bucket,
                obj,
                work / ARTIFACTS / relative_key(obj.key, settings),
                say,
            ): obj
            for obj in plan.to_copy
        }
        for future in as_completed(futures):
            obj = futures[future]
            try:
                digest = future.result()
            except ClientError as exc:
                code = s3.error_code(exc)
                if code in ("NoSuchKey", "404"):
                    # deleted after the listing (gc of a run deleted before the
                    # snapshot): the restored database would not miss it either
                    continue
                raise BackupError(
                    f"cannot copy s3 object {obj.key}: {code}",
                    fix="check the object store (`mlops-platform s3 diagnose`)",
                ) from None
            with lock:
                entries[obj.key] = Artifact(obj.key, obj.size, digest, obj.etag)
    say.finish()
    return entries


def _write_manifest(
    settings: PlatformSettings,
    work: Path,
    backup_id: str,
    started_at: dt.datetime,
    dumped: _Dumped,
    plan: _CopyPlan,
    entries: dict[str, Artifact],
) -> Manifest:
    """The backup's manifest, written into ``work``: the last file of a complete backup."""
    from mlops_platform.migrations import mlflow_version

    snap, auth = dumped.snap, dumped.auth
    manifest = Manifest(
        id=backup_id,
        kit_version=__version__,
        mlflow_version=mlflow_version(),
        schema_revision=snap.schema_revision,
        postgres_version=snap.server_version,
        database=str(settings.db_parts()["name"]),
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        started_at=started_at.isoformat(),
        snapshot_at=snap.snapshot_at.isoformat(),
        finished_at=utc_now().isoformat(),
        dump_bytes=dumped.dump.stat().st_size,
        dump_sha256=dumped.dump_sha256,
        row_counts=snap.row_counts,
        artifacts=sorted(entries.values(), key=lambda a: a.key),
        previous=plan.previous.name if plan.previous else None,
        copied=len(plan.to_copy),
        linked=len(plan.to_link),
        skipped_newer=plan.selection.newer,
        skipped_unreferenced=plan.selection.unreferenced,
        skipped_unsafe=plan.selection.unsafe,
        clock_skew_seconds=plan.skew,
        auth_database=auth.database if auth else None,
        auth_revision=auth.revision if auth else None,
        auth_dump_bytes=dumped.auth_dump.stat().st_size if auth else 0,
        auth_dump_sha256=dumped.auth_sha256,
        auth_row_counts=auth.row_counts if auth else {},
    )
    save_manifest(work, manifest)
    return manifest
