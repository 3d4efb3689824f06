"""The real local stack, brought up once per test session.

Real PostgreSQL, real SeaweedFS (S3), the real tracking server and real nginx, all on
free loopback ports under a throwaway state folder. A missing binary fails the
session with the package to install: integration tests are never silently skipped.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlops_platform.settings import PlatformSettings, load_settings
from tests.support.proc import run
from tests.support.stacks import (  # noqa: F401 - other test files import them from here
    CLI,
    PrivateStack,
    client_env_set,
    down_later,
    make_stack_dir,
    private_stack,
    require_binaries,
    run_cli,
    write_env,
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
        result = run(
            [*CLI, "--env-file", str(self.env_file), *args],
            env=env,
            cwd=self.root,
            timeout=timeout,
            errors="replace",  # `logs` passes on what clients sent nginx, bytes and all
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


def platform_stack() -> Iterator[Platform]:
    """The session's platform; the ``platform`` fixture itself is in tests/conftest.py, so
    integration and reliability tests share one (a fixture imported into another
    conftest is a fixture of its own there: a second stack)."""
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
        down_later(env_file, remove=root)


@pytest.fixture
def mlflow_client_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the in-process `mlflow` client at the platform, as `client-env` says."""
    for key, value in platform.client_env.items():
        monkeypatch.setenv(key, value)
    import mlflow

    mlflow.set_tracking_uri(platform.client_env["MLFLOW_TRACKING_URI"])
    return platform.client_env


@pytest.fixture(scope="session")
def scratch_stack() -> Iterator[PrivateStack]:
    """A second stack for the modules that destroy platform-wide state (backup restores over
    the database and the bucket, gc removes every deleted run): one start-up for all of
    them; each takes it with `shared_scratch`, which resets it in between."""
    with private_stack("mlops-scratch-", resettable=True) as stack:
        yield stack


def shared_scratch(request: pytest.FixtureRequest, scratch: PrivateStack) -> Iterator[PrivateStack]:
    """For a module fixture: SCRATCH as after its first `up`, the client environment set;
    brought down after the module when no later test of the session uses it."""
    from tests.conftest import SHARED

    module = request.node.nodeid.split("::", 1)[0]
    assert SHARED.get(module) == "scratch_stack", (
        f"{module} shares scratch_stack: name it in SHARED (tests/conftest.py), so that "
        "the modules sharing it run on one worker"
    )
    with client_env_set(scratch.fresh()) as stack:
        yield stack
    items = request.session.items
    module_items = [i for i, item in enumerate(items) if item.module is request.module]
    later = items[max(module_items) + 1 :] if module_items else []
    if not any("scratch_stack" in item.fixturenames for item in later):
        scratch.stop()
