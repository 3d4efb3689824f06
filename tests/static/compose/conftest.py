"""The resolved compose model, once per test module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.static.compose.support import filled_example, profiles, run_compose


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(filled_example())
    return path


@pytest.fixture(scope="module")
def model(env_file: Path) -> dict:
    """The resolved compose model with every profile enabled."""
    args = [a for p in profiles() for a in ("--profile", p)]
    result = run_compose(env_file, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
