"""Running a program from a test: a subprocess whose output comes back as text.

`run` is the one ``subprocess.run`` of the static and unit tests that start a script or
the CLI; `run_cli` runs ``python -m mlops_platform`` with it; `clean_env` is the test's
environment without the developer's MLOPS_* variables (the suite's own kept), so that the
program sees only what the test gives it. tests/support/stacks.run_cli is the other way
in: it names a stack's env file and keeps the caller's variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from mlops_platform.settings import installed
from tests.conftest import SUITE_ENVS

CLI = [sys.executable, "-m", "mlops_platform"]


def tool(name: str, package: str) -> str:
    """The tool NAME beside this Python or on PATH; fail saying which PACKAGE installs it."""
    found = installed(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' ({package})", pytrace=False)
    return found


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 60,
    errors: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """ARGV's exit code, stdout and stderr (text, decoded with ERRORS); a failure is the
    test's to judge."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors=errors,
        env=None if env is None else dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``mlops-platform ARGS`` in CWD with exactly ENV (see `clean_env`; None: the test's)."""
    return run([*CLI, *args], env=env, cwd=cwd, timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without the developer's MLOPS_* variables, plus EXTRA."""
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith("MLOPS_") or k in SUITE_ENVS
    }
    env.update(extra)
    return env


def run_with_path(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """ARGV (a shell script) with nothing but the test's PATH and ENV."""
    return run(argv, env={"PATH": os.environ.get("PATH", ""), **env}, timeout=timeout)
