"""PostgreSQL's client programs: finding one that can talk to the server, its argv and
environment (the password never in argv), and the dump and restore built on them."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.db.report import database_report
from mlops_platform.errors import MissingBinaryError, SchemaError, StateError
from mlops_platform.pgbin import find_bin_dir
from mlops_platform.settings import PlatformSettings, inherited_environment


@dataclass(frozen=True)
class DumpResult:
    path: Path
    bytes: int
    seconds: float
    entries: int

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "entries": self.entries,
        }


def _major(version: str) -> int:
    match = re.search(r"(\d+)(?:\.(\d+))?", version)
    return int(match.group(1)) if match else 0


def client_env(settings: PlatformSettings) -> dict[str, str]:
    """Environment of pg_dump/pg_restore/psql: the password in PGPASSWORD, never argv."""
    env = inherited_environment(keep_settings=False)
    password = settings.db_parts()["password"]
    if password:
        env["PGPASSWORD"] = password
    return env


def client_binary(settings: PlatformSettings, name: str, *, server_version: str | None) -> str:
    """A PostgreSQL client program whose major version is at least the server's."""
    path = find_bin_dir(settings.postgres_bin_dir) / name
    if not path.exists():
        raise MissingBinaryError(
            f"{path} does not exist",
            fix="install the PostgreSQL client (apt-get install -y postgresql-client) or "
            "set MLOPS_POSTGRES_BIN_DIR",
        )
    if server_version:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
        found = re.search(r"\)\s*(\d+)", out.stdout)  # "pg_dump (PostgreSQL) 15.18 (...)"
        have = int(found.group(1)) if found else 0
        need = _major(server_version)
        if have < need:
            raise MissingBinaryError(
                f"{name} is PostgreSQL {have} but the server is {server_version}",
                fix=f"install PostgreSQL {need} client programs and set MLOPS_POSTGRES_BIN_DIR",
            )
    return str(path)


def conn_args(settings: PlatformSettings) -> list[str]:
    p = settings.db_parts()
    return ["-h", str(p["host"]), "-p", str(p["port"]), "-U", str(p["user"])]


def dump_database(
    settings: PlatformSettings, folder: Path, *, server_version: str | None = None
) -> DumpResult:
    """``pg_dump -Fc`` into ``folder``; checked with ``pg_restore --list`` before returning."""
    if server_version is None:
        server_version = database_report(settings, top=1).server_version
    pg_dump = client_binary(settings, "pg_dump", server_version=server_version)
    pg_restore = client_binary(settings, "pg_restore", server_version=server_version)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot create the dump folder {folder}: {exc.strerror}",
            fix="set MLOPS_DB_DUMP_DIR to a writable folder",
        ) from None
    name = settings.db_parts()["name"]
    path = folder / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.dump"
    start = time.monotonic()
    env = client_env(settings)
    result = subprocess.run(
        [pg_dump, "-Fc", "--no-password", *conn_args(settings), "-f", str(path), str(name)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SchemaError(f"pg_dump failed: {tail}", fix="fix the error above; nothing was changed")
    listing = subprocess.run(
        [pg_restore, "--list", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise SchemaError(
            f"the dump {path} is unreadable: {listing.stderr.strip()[:200]}",
            fix="check the disk under MLOPS_DB_DUMP_DIR; nothing was changed",
        )
    entries = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    return DumpResult(path, path.stat().st_size, time.monotonic() - start, entries)


def restore_command(settings: PlatformSettings, dump: Path) -> str:
    """The command that puts a database back the way the dump recorded it."""
    p = settings.db_parts()
    return (
        f"PGPASSWORD=... pg_restore --clean --if-exists --no-owner -h {p['host']} "
        f"-p {p['port']} -U {p['user']} -d {p['name']} {dump}"
    )


def restore_dump(settings: PlatformSettings, dump: Path) -> None:
    """Restore ``dump`` over the database (``pg_restore --clean --if-exists``)."""
    pg_restore = client_binary(settings, "pg_restore", server_version=None)
    result = subprocess.run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
            *conn_args(settings),
            "-d",
            str(settings.db_parts()["name"]),
            str(dump),
        ],
        env=client_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SchemaError(
            f"pg_restore failed: {tail}", fix=f"run by hand: {restore_command(settings, dump)}"
        )
