"""``backup restore``: artifacts first, then each database in one transaction, then the
schema upgrades. :func:`restore_backup` runs the steps below, pre-flight first."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from botocore.exceptions import ClientError

from mlops_platform import db, s3
from mlops_platform.backup.common import (
    ARTIFACTS,
    AUTH_DUMP,
    DUMP,
    BackupError,
    NotEmptyError,
    QuietReporter,
    Reporter,
)
from mlops_platform.backup.locations import backup_lock, find_backup, relative_key
from mlops_platform.backup.manifest import Artifact, Manifest
from mlops_platform.backup.objects import StoreObject, list_objects, upload_object
from mlops_platform.backup.pgrestore import restore_database
from mlops_platform.backup.snapshot import compare_row_counts, list_tables
from mlops_platform.backup.verify import check_files
from mlops_platform.errors import SchemaError
from mlops_platform.settings import PlatformSettings


@dataclass
class TargetState:
    schema: str
    runs: int
    experiments: int
    registered_models: int
    objects: int

    @property
    def empty(self) -> bool:
        return not (self.runs or self.experiments or self.registered_models or self.objects)

    def describe(self) -> str:
        return (
            f"{self.runs} runs, {self.experiments} experiments besides Default, "
            f"{self.registered_models} registered models, {self.objects}+ objects in the store"
        )


def target_state(settings: PlatformSettings, client: Any) -> TargetState:
    counts = {"runs": 0, "experiments": 0, "registered_models": 0}
    queries = {
        "runs": "SELECT count(*) FROM runs",
        "experiments": "SELECT count(*) FROM experiments WHERE experiment_id <> 0",
        "registered_models": "SELECT count(*) FROM registered_models",
    }
    with db.connection(settings) as conn:
        tables = set(list_tables(conn))
        for name, sql in queries.items():
            if name in tables:
                counts[name] = int(conn.execute(sqlalchemy.text(sql)).scalar() or 0)
    try:
        page = client.list_objects_v2(
            Bucket=settings.s3_bucket, Prefix=settings.s3_prefix + "/", MaxKeys=1
        )
        objects = int(page.get("KeyCount", len(page.get("Contents", []))))
    except ClientError as exc:
        code = s3.error_code(exc)
        if code not in ("NoSuchBucket", "404"):
            raise BackupError(
                f"cannot list s3://{settings.s3_bucket}: {code}",
                fix="check MLOPS_S3_* settings (`mlops-platform s3 diagnose`)",
            ) from None
        objects = 0
    return TargetState(
        "tables" if tables - {"alembic_version"} else "empty",
        counts["runs"],
        counts["experiments"],
        counts["registered_models"],
        objects,
    )


@dataclass
class RestoreResult:
    id: str
    uploaded: int
    uploaded_bytes: int
    skipped_present: int
    removed_extra: int
    schema_before: str | None
    schema_after: str | None
    upgraded: bool
    row_counts_match: bool
    problems: list[str]
    seconds: float
    auth_restored: bool = False
    auth_upgraded: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"seconds": round(self.seconds, 2)}


@dataclass
class _Checked:
    """What the pre-flight leaves: the store's client and the schema heads to reach."""

    client: Any
    head: str
    auth_head: str | None


def restore_backup(
    settings: PlatformSettings,
    backup_id: str,
    *,
    force: bool = False,
    report: Reporter | None = None,
    confirm: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Put the platform back to the backup: artifacts first, then the database atomically,
    then ``db upgrade`` when the backup is older than this MLflow.

    Pre-flight, nothing changed yet: the backup exists, its manifest is from a known kit,
    every checksum matches, the schema is one this MLflow knows, the target is empty
    (or ``force``), the bucket and prefix match. ``confirm`` is asked only then, after
    every check that could refuse, with the question; it raises to stop.
    """
    say = report or QuietReporter()
    start = time.monotonic()
    path, manifest = find_backup(settings, backup_id)
    with backup_lock(path.parent):
        # -- pre-flight. No impact yet.
        checked = _preflight(settings, path, manifest, force=force, say=say)
        if confirm is not None:
            confirm(
                f"restore backup {path.name} ({manifest.row_counts.get('runs', 0)} runs, "
                f"{len(manifest.artifacts)} artifacts) onto {settings.db_parts()['name']} and "
                f"s3://{settings.s3_bucket}/{settings.s3_prefix}?"
            )
        # -- start impacting things.
        s3.ensure_bucket(settings)
        present, _ = list_objects(settings, checked.client)
        todo = _upload_missing(settings, checked.client, path, manifest, present, say)
        say.message("restoring the database (one transaction)")
        restore_database(settings, path / DUMP)
        _, problems = compare_row_counts(settings, manifest.row_counts)
        auth_restored = auth_upgraded = False
        if manifest.auth_dump_sha256:
            problems += _restore_auth(settings, path / AUTH_DUMP, manifest, say)
            auth_restored = True
            if manifest.auth_revision != checked.auth_head:
                say.message(
                    f"upgrading the auth store {manifest.auth_revision} -> {checked.auth_head}"
                )
                db.upgrade_auth_store(settings)
                auth_upgraded = True
        else:
            say.message(
                "the backup holds no auth store: users, roles and grants are left as they are"
            )
        removed = _remove_extra(settings, checked.client, manifest, present, say)
        revision = manifest.schema_revision
        upgraded = _upgrade_schema(settings, revision, checked.head, say)
    return RestoreResult(
        path.name,
        len(todo),
        sum(a.size for a in todo),
        len(manifest.artifacts) - len(todo),
        removed,
        revision,
        checked.head if upgraded else revision,
        upgraded,
        not problems,
        problems,
        time.monotonic() - start,
        auth_restored=auth_restored,
        auth_upgraded=auth_upgraded,
    )


def _preflight(
    settings: PlatformSettings, path: Path, manifest: Manifest, *, force: bool, say: Reporter
) -> _Checked:
    """Every check that can refuse the restore, before anything changes: the bucket and
    prefix, the schema revisions, an empty target (or ``force``), every checksum, the
    PostgreSQL client programs."""
    from mlops_platform.migrations import mlflow_version

    if (manifest.bucket, manifest.prefix) != (settings.s3_bucket, settings.s3_prefix):
        raise BackupError(
            f"backup {path.name} holds s3://{manifest.bucket}/{manifest.prefix}, this "
            f"platform uses s3://{settings.s3_bucket}/{settings.s3_prefix}",
            fix="set MLOPS_S3_BUCKET and MLOPS_S3_PREFIX to the backup's (the database "
            "refers to artifacts by those)",
        )
    head = db.head_revision()
    revision = manifest.schema_revision
    if revision and revision != head and not db.known_revision(revision):
        raise SchemaError(
            f"backup {path.name} has schema {revision} from MLflow "
            f"{manifest.mlflow_version}, newer than this MLflow {mlflow_version()} knows",
            fix=f"install MLflow {manifest.mlflow_version} to restore it",
        )
    auth_head = None
    if manifest.auth_dump_sha256:
        auth_head = db.auth_head_revision()
        auth_rev = manifest.auth_revision
        if auth_rev and auth_rev != auth_head and not db.known_auth_revision(auth_rev):
            raise SchemaError(
                f"backup {path.name} has an auth store at {auth_rev} from MLflow "
                f"{manifest.mlflow_version}, newer than this MLflow {mlflow_version()} "
                "knows",
                fix=f"install MLflow {manifest.mlflow_version} to restore it",
            )
    client = s3.client(settings, timeout=60)
    state = target_state(settings, client)
    if not state.empty and not force:
        raise NotEmptyError(
            f"the platform is not empty ({state.describe()})",
            fix="restore onto an empty platform, or pass --force to replace everything "
            "(take a backup first: `mlops-platform backup create`)",
        )
    say.message(f"checking backup {path.name}")
    problems, _, _ = check_files(path, manifest, say)
    if problems:
        raise BackupError(
            f"backup {path.name} is damaged: {problems[0]}"
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
            fix="restore another backup (`mlops-platform backup list`); "
            "`backup verify ID` lists every problem",
        )
    for program in ("pg_restore", "psql"):
        db.client_binary(settings, program, server_version=None)
    return _Checked(client, head, auth_head)


def _upload_missing(
    settings: PlatformSettings,
    client: Any,
    path: Path,
    manifest: Manifest,
    present: list[StoreObject],
    say: Reporter,
) -> list[Artifact]:
    """Upload every artifact of the backup the store lacks (or holds with another size or
    ETag), in parallel; the artifacts uploaded."""
    present_by_key = {o.key: o for o in present}
    todo = [
        a
        for a in manifest.artifacts
        if not (
            a.key in present_by_key
            and present_by_key[a.key].size == a.size
            and present_by_key[a.key].etag == a.etag
        )
    ]
    skipped = len(manifest.artifacts) - len(todo)
    say.message(f"uploading {len(todo)} artifacts ({skipped} already present)")
    say.start("uploading artifacts", sum(a.size for a in todo))
    with ThreadPoolExecutor(max_workers=settings.backup_workers) as pool:
        futures = [
            pool.submit(
                upload_object,
                client,
                settings.s3_bucket,
                a.key,
                path / ARTIFACTS / relative_key(a.key, manifest.prefix),
                say,
            )
            for a in todo
        ]
        for future in as_completed(futures):
            future.result()
    say.finish()
    return todo


def _remove_extra(
    settings: PlatformSettings,
    client: Any,
    manifest: Manifest,
    present: list[StoreObject],
    say: Reporter,
) -> int:
    """Delete the objects the store held before the restore that the backup does not;
    how many."""
    wanted = {a.key for a in manifest.artifacts}
    extra = [o.key for o in present if o.key not in wanted]
    if not extra:
        return 0
    say.message(f"removing {len(extra)} objects the backup does not hold")
    return s3.delete_keys(client, settings.s3_bucket, extra)


def _upgrade_schema(
    settings: PlatformSettings, revision: str | None, head: str, say: Reporter
) -> bool:
    """``mlflow db upgrade`` when the restored schema is older than this MLflow's head;
    whether it ran."""
    if not revision or revision == head:
        return False
    say.message(f"upgrading the schema {revision} -> {head}")
    db.upgrade_schema(settings, db.client_env(settings))
    return True


def _restore_auth(
    settings: PlatformSettings, dump: Path, manifest: Manifest, say: Reporter
) -> list[str]:
    """Replace the auth store with its dump in one transaction; the tables that differ."""
    from mlops_platform import auth_store

    say.message(f"restoring the auth store {settings.auth_db_name} (one transaction)")
    auth_store.ensure_database(settings)
    auth = db.auth_settings(settings)
    try:
        restore_database(auth, dump)
    except BackupError as exc:
        raise BackupError(
            f"the tracking database was restored but the auth store was not: {exc.message}",
            fix="fix the error and run `mlops-platform backup restore --force` again",
        ) from None
    return compare_row_counts(auth, manifest.auth_row_counts, "auth store table")[1]
