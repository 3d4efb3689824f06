"""The fast store's URI scheme and the server argv that opts into it (pure, no database)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlops_platform.fast_store import to_sqlalchemy_url, to_store_uri
from mlops_platform.render.server import server_argv
from mlops_platform.settings import PlatformSettings


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings()


def test_scheme_maps_to_psycopg_with_an_application_name() -> None:
    assert (
        to_sqlalchemy_url("mlops-postgresql://u@h:5432/db")
        == "postgresql+psycopg://u@h:5432/db?application_name=mlops-fast-store"
    )
    assert (
        to_sqlalchemy_url("mlops-postgresql://u@h/db?sslmode=require")
        == "postgresql+psycopg://u@h/db?sslmode=require&application_name=mlops-fast-store"
    )
    assert to_sqlalchemy_url("mlops-postgresql://u@h/db?application_name=x").endswith("=x")
    assert to_store_uri("postgresql+psycopg2://u@h/db") == "mlops-postgresql://u@h/db"
    with pytest.raises(ValueError):
        to_store_uri("sqlite:///x.db")


def test_off_with_the_setting(settings: PlatformSettings) -> None:
    argv = server_argv(settings.model_copy(update={"db_fast_metrics": False}))
    assert argv[argv.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")
    assert "--registry-store-uri" not in argv


def test_on_serves_the_plugin_scheme_and_keeps_the_registry(settings: PlatformSettings) -> None:
    argv = server_argv(settings.model_copy(update={"db_fast_metrics": True}))
    assert argv[argv.index("--backend-store-uri") + 1] == (
        "mlops-postgresql://mlflow@127.0.0.1:5432/mlflow"
    )
    assert argv[argv.index("--registry-store-uri") + 1] == (
        "postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow"
    )


def test_mlflow_registers_the_entry_point() -> None:
    from mlflow.server.handlers import _tracking_store_registry as server_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from mlops_platform.fast_store import build_store

    assert _tracking_store_registry._registry["mlops-postgresql"] is build_store
    assert server_registry._registry["mlops-postgresql"] is build_store


def test_on_by_default_and_set_aside_for_the_job_runner(settings: PlatformSettings) -> None:
    from mlops_platform.settings import PlatformSettings as Settings

    assert Settings.model_fields["db_fast_metrics"].default is True
    fast = settings.model_copy(update={"db_fast_metrics": True})
    backend = server_argv(fast)[server_argv(fast).index("--backend-store-uri") + 1]
    assert backend.startswith("mlops-postgresql://")
    # MLflow's job runner takes only a plain URI: then MLflow's store, and no problem
    both = fast.model_copy(update={"job_execution": True})
    argv = server_argv(both)
    assert argv[argv.index("--backend-store-uri") + 1] == both.database_url(with_password=False)
    assert "--registry-store-uri" not in argv
    assert not any("MLOPS_DB_FAST_METRICS" in p for p in both.problems())
    off = settings.model_copy(update={"db_fast_metrics": False})
    argv = server_argv(off)
    assert argv[argv.index("--backend-store-uri") + 1] == off.database_url(with_password=False)


def test_the_server_is_told_whether_to_prepare_the_metrics_write(
    settings: PlatformSettings,
) -> None:
    """`serve` passes MLOPS_DB_PREPARED_WRITES to the server, where the store reads it
    under the name the store knows (on by default, off for a pooler that cannot keep
    prepared statements)."""
    from mlops_platform.fast_store.store import PREPARED_WRITES_ENV
    from mlops_platform.render.server import server_env

    assert server_env(settings)[PREPARED_WRITES_ENV] == "true"
    off = settings.model_copy(update={"db_prepared_writes": False})
    assert server_env(off)[PREPARED_WRITES_ENV] == "false"
