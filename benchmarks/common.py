"""Shared by the benchmarks: a throwaway local stack on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.bootstrap import init_env_file
from mlops_platform.settings import PlatformSettings, load_settings
from tests.conftest import free_port


@dataclass
class Stack:
    root: Path
    env_file: Path
    settings: PlatformSettings

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "mlops_platform", "--env-file", str(self.env_file), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"mlops-platform {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        return result

    def status(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.cli("status", "--json").stdout)


@contextmanager
def throwaway_stack(**values: str) -> Iterator[Stack]:
    """Configured (not started) stack in a temp folder; always torn down and removed."""
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    os.chmod(root, 0o755)  # PostgreSQL's OS user must traverse it
    env_file = root / ".env"
    init_env_file(
        env_file,
        values={
            "state_dir": str(root / "state"),
            "db_port": str(free_port()),
            "s3_port": str(free_port()),
            "server_port": str(free_port()),
            "proxy_port": str(free_port()),
            **values,
        },
    )
    stack = Stack(root, env_file, load_settings(env_file))
    try:
        yield stack
    finally:
        subprocess.run(
            [sys.executable, "-m", "mlops_platform", "--env-file", str(env_file), "down"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def wait_for_mlflow(url: str, *, what: str, log_path: Path) -> None:
    """Until the server at ``url`` answers an API call that reads its database."""
    import urllib.request

    from mlops_platform.stack.base import wait_until

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(
                url + "/api/2.0/mlflow/experiments/get?experiment_id=0", timeout=3
            ) as response:
                return int(response.status) == 200
        except OSError:
            return False

    wait_until(healthy, timeout=180, what=what, log_path=log_path)
