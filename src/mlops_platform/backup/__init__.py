"""Backups of the whole platform: a consistent database dump plus the artifacts it refers to.

One backup is one folder ``<backup_dir>/<ID>/`` holding

- ``database.dump``: ``pg_dump -Fc`` of the tracking database, taken in an exported
  REPEATABLE READ snapshot;
- ``auth.dump``: the same of MLflow's user and permission store (``MLOPS_AUTH_DB_NAME``:
  users, roles, grants), in its own snapshot opened while the tracking one is held;
- ``artifacts/<key below the prefix>``: every artifact object of the snapshot's state;
- ``manifest.json``: kit, MLflow and schema versions, the row count of every table,
  every artifact key with size, ETag and sha256, start, snapshot and end times.

Consistency: the dump is the point in time. An object is copied when it belongs to an
experiment, run, logged model or trace that the snapshot holds *and* it was written
before the snapshot (S3 ``LastModified`` against the database clock, corrected by the
measured skew between the two). Objects written later, or owned by entities the
snapshot does not know, are left out: a restore is the platform as it was at the
snapshot, with nothing in the database missing from the store and nothing extra.

Incremental: an object whose key, size and ETag match the previous backup's entry is
hard-linked from it (copied where the file system cannot link), so a nightly run
downloads only what is new. Hard-linked files are shared: pruning one backup never
removes data another still needs.

A backup is written to ``<ID>.partial`` and renamed when complete; a crash leaves no
folder that ``list``, ``verify`` or ``restore`` would take for a backup.

The package, one module per part:

- ``common``: folder layout, errors, progress reporting
- ``manifest``: ``manifest.json``, read, checked and written
- ``locations``: the backup folder, its lock, IDs, safe paths, listing
- ``snapshot``: the database side (exported snapshot, row counts, ``pg_dump``)
- ``objects``: the artifact side (listing, selection, one object's copy)
- ``create``, ``verify``, ``restore`` (with ``pgrestore``), ``prune``: the commands

Everything callers use is importable from ``mlops_platform.backup`` itself.
"""

from mlops_platform.backup.common import (
    ARTIFACTS,
    AUTH_DUMP,
    CHUNK,
    DUMP,
    FORMAT,
    KIT,
    MANIFEST,
    PARTIAL,
    SUPPORTED_FORMATS,
    BackupError,
    BackupNotFoundError,
    DestinationError,
    NotEmptyError,
    QuietReporter,
    Reporter,
)
from mlops_platform.backup.create import CreateResult, create_backup
from mlops_platform.backup.locations import (
    BackupInfo,
    backup_root,
    check_destination,
    check_space,
    find_backup,
    list_backups,
    new_id,
    safe_relative,
)
from mlops_platform.backup.manifest import Artifact, Manifest, check_compatible, read_manifest
from mlops_platform.backup.objects import (
    Selection,
    StoreObject,
    list_objects,
    owner,
    select_objects,
)
from mlops_platform.backup.pgrestore import drop_all_sql, restore_database
from mlops_platform.backup.prune import PruneResult, parse_age, plan_prune, prune_backups
from mlops_platform.backup.restore import (
    RestoreResult,
    TargetState,
    restore_backup,
    target_state,
)
from mlops_platform.backup.snapshot import (
    AuthSnapshot,
    Snapshot,
    auth_snapshot,
    count_mismatches,
    dump_argv,
    exported_snapshot,
    row_counts,
    row_counts_of,
)
from mlops_platform.backup.verify import (
    VerifyResult,
    check_files,
    scratch_postgres,
    temporary_database,
    throwaway_postgres,
    verify_backup,
)

__all__ = [
    "ARTIFACTS",
    "AUTH_DUMP",
    "CHUNK",
    "DUMP",
    "FORMAT",
    "KIT",
    "MANIFEST",
    "PARTIAL",
    "SUPPORTED_FORMATS",
    "Artifact",
    "AuthSnapshot",
    "BackupError",
    "BackupInfo",
    "BackupNotFoundError",
    "CreateResult",
    "DestinationError",
    "Manifest",
    "NotEmptyError",
    "PruneResult",
    "QuietReporter",
    "Reporter",
    "RestoreResult",
    "Selection",
    "Snapshot",
    "StoreObject",
    "TargetState",
    "VerifyResult",
    "auth_snapshot",
    "backup_root",
    "check_compatible",
    "check_destination",
    "check_files",
    "check_space",
    "count_mismatches",
    "create_backup",
    "drop_all_sql",
    "dump_argv",
    "exported_snapshot",
    "find_backup",
    "list_backups",
    "list_objects",
    "new_id",
    "owner",
    "parse_age",
    "plan_prune",
    "prune_backups",
    "read_manifest",
    "restore_backup",
    "restore_database",
    "row_counts",
    "row_counts_of",
    "safe_relative",
    "scratch_postgres",
    "select_objects",
    "target_state",
    "temporary_database",
    "throwaway_postgres",
    "verify_backup",
]
