"""The cloud-style settings set the rendered overlays start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_platform.settings import PlatformSettings
from tests.conftest import clear_mlops_env
from tests.static.kustomize.support import CLOUD_DB, SECRETS


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    """External PostgreSQL with verify-full, AWS S3 without keys (IRSA), a public name."""
    clear_mlops_env(monkeypatch)
    return PlatformSettings(  # type: ignore[call-arg]
        _env_file=None,
        state_dir=tmp_path,
        db_url=CLOUD_DB,
        object_store="external",
        s3_bucket="acme-mlflow",
        s3_region="eu-west-1",
        s3_path_style=False,
        public_url="https://mlflow.acme.example",
        db_pool_size=3,
        db_fast_metrics=True,
        **SECRETS,
    )
