"""The kit's metric-history view answers with MLflow's exact bytes.

A history with the awkward values (NaN, ±inf, -0.0, the largest double, ints, negative
steps, equal timestamps) is logged through the session platform's proxy with MLflow's
client. Then every request shape — whole, paged by 1, 7 and 1,000 following the tokens,
the ``ajax-api`` path, ``run_uuid`` instead of ``run_id``, a key never logged, and the
refusals (no key, ``max_results=0``) — goes to the platform over the network and, for
the expected answer, to MLflow's own handler over MLflow's own store on the same
database. Status and body must be equal byte for byte.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mlflow.entities import Metric
from mlflow.server import app as flask_app
from mlflow.server import handlers
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlops_platform import fast_views
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

VALUES = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.7976931348623157e308, 5e-324, 1, 0.1]


@pytest.fixture(scope="module")
def history(platform: Platform) -> Iterator[str]:
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as mp:
        for key, value in platform.client_env.items():
            mp.setenv(key, value)
        yield _log_history(MlflowClient(platform.client_env["MLFLOW_TRACKING_URI"]))


def _log_history(client: Any) -> str:
    experiment = client.create_experiment(f"fast-views-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    points = [
        Metric("loss", VALUES[i % len(VALUES)], 1_700_000_000_000 + i // 3, (i % 50) - 10)
        for i in range(300)
    ]
    for start in range(0, len(points), 100):
        client.log_batch(run_id, metrics=points[start : start + 100])
    return run_id


@pytest.fixture(scope="module")
def mlflow_store(platform: Platform) -> Iterator[SqlAlchemyStore]:
    store = SqlAlchemyStore(platform.settings.database_url(with_password=True), "/nonexistent")
    yield store
    engine = SqlAlchemyStore._engine_map.pop(store.db_uri, None)
    if engine is not None:
        engine.dispose()


def mlflows_answer(store: SqlAlchemyStore, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
    """MLflow's own view over MLflow's own store, on the platform's database."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "_get_tracking_store", lambda *a, **k: store)
        with flask_app.test_request_context(path, method="GET", query_string=params):
            response = handlers._get_metric_history()
    return response.status_code, response.get_data()


def kits_answer(platform: Platform, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
    got = requests.get(platform.url + path, params=params, auth=platform.auth, timeout=30)
    return got.status_code, got.content


def test_metric_history_bytes_are_mlflows(
    platform: Platform, history: str, mlflow_store: SqlAlchemyStore
) -> None:
    api, ajax = "/api/2.0/mlflow/metrics/get-history", "/ajax-api/2.0/mlflow/metrics/get-history"
    asked: list[tuple[str, dict[str, Any]]] = [
        (api, {"run_id": history, "metric_key": "loss"}),
        (ajax, {"run_id": history, "metric_key": "loss"}),
        (api, {"run_uuid": history, "metric_key": "loss"}),
        (api, {"run_id": history, "metric_key": "never-logged"}),
        (api, {"run_id": history}),
        (api, {"run_id": history, "metric_key": "loss", "max_results": 0}),
    ]
    pages = 0
    for size in (1, 7, 1000):
        token = None
        while True:
            params = {"run_id": history, "metric_key": "loss", "max_results": size}
            if token:
                params["page_token"] = token
            expected = mlflows_answer(mlflow_store, api, params)
            assert kits_answer(platform, api, params) == expected, params
            token = requests.models.complexjson.loads(expected[1]).get("next_page_token")
            pages += 1
            if not token:
                break
    for path, params in asked:
        expected = mlflows_answer(mlflow_store, path, params)
        assert kits_answer(platform, path, params) == expected, (path, params)
    assert pages > 300 + 43  # the paged reads really walked the history
    whole = mlflows_answer(mlflow_store, api, asked[0][1])[1].decode()
    # The awkward values are really in what was compared (MLflow stores ±inf as ±max).
    for word in ('"NaN"', "-0.0", " 1.7976931348623157e+308", "-1.7976931348623157e+308", "5e-324"):
        assert word in whole, word


def test_the_kits_view_is_the_one_installed() -> None:
    """The factories put the kit's view under MLflow's endpoint name (so MLflow's
    permission hooks, keyed by path, still run for it)."""
    from mlops_platform import artifact_stream

    artifact_stream.create_default_app()
    view = flask_app.view_functions[fast_views.ENDPOINT]
    assert view is not handlers._get_metric_history
    assert view.__name__ == fast_views.ENDPOINT


def test_metric_history_keeps_mlflows_permission_check(platform: Platform, history: str) -> None:
    """MLflow's hook (read on the run's experiment) still decides for the kit's view."""
    name = f"svc-views-{uuid.uuid4().hex[:6]}"
    added = json.loads(
        platform.cli("users", "add", name, "--role", "service", "--generate", "--json").stdout
    )
    auth = (name, added["generated_password"])
    url = platform.url + "/api/2.0/mlflow/metrics/get-history"
    params = {"run_id": history, "metric_key": "loss"}
    assert requests.get(url, params=params, auth=auth, timeout=30).status_code == 403
    run = requests.get(
        platform.url + "/api/2.0/mlflow/runs/get",
        params={"run_id": history},
        auth=platform.auth,
        timeout=30,
    ).json()["run"]
    platform.cli("users", "grant", name, "experiment", run["info"]["experiment_id"], "READ")
    granted = requests.get(url, params=params, auth=auth, timeout=30)
    assert granted.status_code == 200
    assert len(granted.json()["metrics"]) == 300
