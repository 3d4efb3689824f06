"""The README's quick start is two commands, and `make up` installs the platform only."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.newcomer.support import REPO, commands, sh_blocks

pytestmark = pytest.mark.integration


def test_readme_quick_start_is_two_commands_and_says_what_make_up_installs() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = sh_blocks(readme, "Quick start (fresh machine)")
    assert [commands(b) for b in blocks] == [["make up"], ["make test"]]
    section = readme.split("## Quick start (fresh machine)", 1)[1].split("\n## ", 1)[0]
    assert ".venv" in section and "test and development extras" in section
    assert "Where data lives" in section


def _make_dry_run(target: str) -> str:
    """What `make TARGET` would run on a machine with nothing installed."""
    return subprocess.run(
        ["make", "-n", "-B", target, "VENV=/nonexistent-venv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_make_up_installs_the_platform_without_the_test_extras() -> None:
    dry = _make_dry_run("up")
    installs = [line for line in dry.splitlines() if "pip install" in line and " -e " in line]
    assert installs == ["/nonexistent-venv/bin/pip install --quiet -e ."], installs
    assert "chromium" not in dry  # the UI tests' browser is not the platform's
    assert '-e ".[dev]"' in _make_dry_run("test")
