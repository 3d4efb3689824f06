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
from mlflow.utils import proto_json_utils

from mlops_platform import fast_views
from tests.integration.conftest import Platform
from tests.support.mlflow_stores import dispose
from tests.support.users import add_user

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
    dispose(store)


def mlflows_answer(
    store: SqlAlchemyStore, path: str, params: dict[str, Any], view: Any = None
) -> tuple[int, bytes]:
    """MLflow's own view over MLflow's own store, on the platform's database, writing
    with MLflow's own message_to_json (the kit's factories, if this process ran one,
    replaced the handlers' module global)."""
    view = view or handlers._get_metric_history
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "_get_tracking_store", lambda *a, **k: store)
        mp.setattr(handlers, "message_to_json", proto_json_utils.message_to_json)
        if view is handlers._get_metric_history:
            context = flask_app.test_request_context(path, method="GET", query_string=params)
        else:
            context = flask_app.test_request_context(path, method="POST", json=params)
        with context:
            response = view()
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


def _grant_read_on_run(platform: Platform, user: str, run_id: str) -> None:
    """READ for USER on the experiment of RUN_ID."""
    run = requests.get(
        platform.url + "/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        auth=platform.auth,
        timeout=30,
    ).json()["run"]
    platform.cli("users", "grant", user, "experiment", run["info"]["experiment_id"], "READ")


def test_metric_history_keeps_mlflows_permission_check(platform: Platform, history: str) -> None:
    """MLflow's hook (read on the run's experiment) still decides for the kit's view."""
    auth = add_user(platform, "svc-views")
    url = platform.url + "/api/2.0/mlflow/metrics/get-history"
    params = {"run_id": history, "metric_key": "loss"}
    assert requests.get(url, params=params, auth=auth, timeout=30).status_code == 403
    _grant_read_on_run(platform, auth[0], history)
    granted = requests.get(url, params=params, auth=auth, timeout=30)
    assert granted.status_code == 200
    assert len(granted.json()["metrics"]) == 300


def test_metric_history_for_a_reader_is_mlflows(
    platform: Platform, history: str, mlflow_store: SqlAlchemyStore
) -> None:
    """A user who is not an admin goes through MLflow's whole check (the run's experiment,
    the grants) and MLflow's after-request redaction, which the kit skips for a history
    that names no logged model: the bytes are still MLflow's, whole and paged. Without a
    grant: 403 for this run and for a run that does not exist, as MLflow answers."""
    auth = add_user(platform, "svc-reader")
    url = platform.url + "/api/2.0/mlflow/metrics/get-history"
    asked = [
        {"run_id": history, "metric_key": "loss"},
        {"run_id": history, "metric_key": "loss", "max_results": 7},
        {"run_id": history, "metric_key": "never-logged"},
    ]
    missing = {"run_id": uuid.uuid4().hex, "metric_key": "loss"}
    for params in [*asked, missing]:
        assert requests.get(url, params=params, auth=auth, timeout=30).status_code == 403
    _grant_read_on_run(platform, auth[0], history)
    for params in asked:
        got = requests.get(url, params=params, auth=auth, timeout=30)
        api = "/api/2.0/mlflow/metrics/get-history"
        assert (got.status_code, got.content) == mlflows_answer(mlflow_store, api, params)
    assert requests.get(url, params=missing, auth=auth, timeout=30).status_code == 403


# -- search_runs: the fast store's rows and the kit's JSON writer -----------------------


@pytest.fixture(scope="module")
def searched(platform: Platform) -> Iterator[str]:
    """An experiment of 12 runs logged through the proxy: params, tags, awkward metrics,
    a dataset input and a logged model on some, one run without a name."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Param, RunTag

    with pytest.MonkeyPatch.context() as mp:
        for key, value in platform.client_env.items():
            mp.setenv(key, value)
        client = MlflowClient(platform.client_env["MLFLOW_TRACKING_URI"])
        experiment = client.create_experiment(f"fast-search-{uuid.uuid4().hex[:8]}")
        for i in range(12):
            run = client.create_run(experiment, run_name=None if i == 5 else f"run-{i}")
            run_id = run.info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric("accuracy", VALUES[i % len(VALUES)], 1_700_000_000_000, i)],
                params=[Param("model", ["bert", "xgb"][i % 2]), Param("seed", str(i))],
                tags=[RunTag("team", "nlp"), RunTag("note", 'quo"te ✓')],
            )
            if i % 4 == 0:
                dataset = Dataset("train", f"d{i}", "local", "{}", "path/train.csv")
                client.log_inputs(
                    run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])]
                )
            if i % 3 == 0:
                model = client.create_logged_model(experiment, source_run_id=run_id, name=f"m{i}")
                client.log_outputs(run_id, [LoggedModelOutput(model.model_id, i)])
            if i % 2:
                client.set_terminated(run_id)
        yield experiment


def _normalized(body: bytes) -> Any:
    """The answer with each run's metrics, params and tags in key order (an SQL read
    without ORDER BY returns them in any order, MLflow's included)."""
    answer = json.loads(body)
    for run in answer.get("runs", []):
        for part in ("metrics", "params", "tags"):
            run.get("data", {}).get(part, []).sort(key=lambda item: item["key"])
    return answer


def test_search_runs_answers_are_mlflows(
    platform: Platform, searched: str, mlflow_store: SqlAlchemyStore
) -> None:
    api, ajax = "/api/2.0/mlflow/runs/search", "/ajax-api/2.0/mlflow/runs/search"
    asked: list[tuple[str, dict[str, Any]]] = [
        (api, {"experiment_ids": [searched]}),
        (ajax, {"experiment_ids": [searched], "order_by": ["attributes.start_time DESC"]}),
        (api, {"experiment_ids": [searched], "order_by": ["metrics.accuracy DESC"]}),
        (api, {"experiment_ids": [searched], "filter": "params.model = 'bert'"}),
        (api, {"experiment_ids": [searched], "filter": "metrics.accuracy > 0.05"}),
        (  # ordered by the filtered metric: the fast store's one-join plan
            api,
            {
                "experiment_ids": [searched],
                "filter": "metrics.accuracy != 0.1",
                "order_by": ["metrics.accuracy DESC"],
                "max_results": 4,
            },
        ),
        (api, {"experiment_ids": [searched], "filter": "attributes.status = 'FINISHED'"}),
        (api, {"experiment_ids": [searched], "filter": "params.model = 'nothing'"}),
        (api, {"experiment_ids": [searched], "filter": "no such = grammar"}),
        (api, {"experiment_ids": [searched], "max_results": 50001}),
    ]
    for size in (1, 5):
        token = None
        while True:
            params = {"experiment_ids": [searched], "max_results": size}
            if token:
                params["page_token"] = token
            asked.append((api, params))
            status, body = mlflows_answer(mlflow_store, api, params, handlers._search_runs)
            token = json.loads(body).get("next_page_token") if status == 200 else None
            if not token:
                break
    runs_seen = 0
    for path, params in asked:
        status, body = mlflows_answer(mlflow_store, path, params, handlers._search_runs)
        got = requests.post(platform.url + path, json=params, auth=platform.auth, timeout=30)
        assert got.status_code == status, (path, params, got.text)
        if status == 200:
            assert _normalized(got.content) == _normalized(body), (path, params)
            runs_seen += len(json.loads(body).get("runs", []))
        else:
            assert json.loads(got.content)["error_code"] == json.loads(body)["error_code"]
    assert len(asked) == 10 + 12 + 3  # every page of both sizes was walked
    whole = mlflows_answer(mlflow_store, api, asked[0][1], handlers._search_runs)[1].decode()
    # What was compared holds what the kit's reads and writer must get right.
    for word in ('"NaN"', '"dataset_inputs"', '"model_outputs"', 'quo\\"te', '"FINISHED"'):
        assert word in whole, word
    assert runs_seen > 12 * 3
