"""What unit tests share: settings built from given values alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_platform.settings import PlatformSettings
from tests.conftest import clear_mlops_env

# Placeholder secrets a rendering may carry (tests check that they travel, or do not).
SECRETS: dict[str, Any] = {
    "db_password": "db-secret-value-1234",
    "s3_access_key_id": "MLOPSKEYID12345",
    "s3_secret_access_key": "s3-secret-value-1234",
    "flask_secret_key": "flask-secret-value-1234",
    "proxy_password": "proxy-secret-value-1234",
}


@pytest.fixture
def make_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., PlatformSettings]:
    """The one settings factory of the unit tests: `make_settings(**values)` is
    `PlatformSettings` from VALUES alone: no env file, none of the developer's MLOPS_*
    variables, the state folder in the test's own tmp_path unless VALUES name one."""
    clear_mlops_env(monkeypatch)

    def make(**values: Any) -> PlatformSettings:
        return PlatformSettings(_env_file=None, **{"state_dir": tmp_path, **values})  # type: ignore[call-arg]

    return make


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CLI run that sees nothing of the developer's: no MLOPS_* variables, no secrets
    folder, the test's own tmp_path as the working folder."""
    clear_mlops_env(monkeypatch)
    monkeypatch.setenv("MLOPS_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
