"""What the registry tests share: a fresh registered model, the CLI with the client's
environment, a model's aliases.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from tests.integration.conftest import Platform
from tests.support.models import register_versions


def new_model(platform: Platform, governed: dict[str, Any], mlflow_env: None = None) -> str:
    name = f"gov-{uuid.uuid4().hex[:8]}"
    for key, value in platform.client_env.items():
        os.environ[key] = value
    register_versions(governed["uri"], name)
    return name


def cli(platform: Platform, *args: str) -> Any:
    return platform.cli(*args, check=False, env={**os.environ, **platform.client_env})


def aliases(uri: str, name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(uri).get_registered_model(name).aliases)
