"""What a data scientist's ordinary `mlflow` code does, through the proxy, end to end."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import requests

from mlops_platform.registry import file_sha256
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


def test_requests_without_credentials_get_401(platform: Platform) -> None:
    for path in (
        "/",
        "/api/2.0/mlflow/experiments/search?max_results=1",
        "/api/2.0/mlflow-artifacts/artifacts",
    ):
        response = requests.get(platform.url + path, timeout=10)
        assert response.status_code == 401, path
    wrong = requests.get(
        platform.url + "/api/2.0/mlflow/experiments/search?max_results=1",
        auth=(platform.user, "not-the-password"),
        timeout=10,
    )
    assert wrong.status_code == 401


def test_client_env_points_at_the_proxy(platform: Platform) -> None:
    env = platform.client_env
    assert env["MLFLOW_TRACKING_URI"] == platform.url
    assert env["MLFLOW_TRACKING_USERNAME"] == platform.user
    assert env["MLFLOW_TRACKING_PASSWORD"] == platform.password
    assert "AWS_SECRET_ACCESS_KEY" not in env  # proxied artifacts: clients never see S3 keys


def test_tracking_workload(
    platform: Platform, mlflow_client_env: dict[str, str], tmp_path: Path
) -> None:
    import mlflow

    experiment_id = mlflow.set_experiment("iris-classification").experiment_id
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    small_dir = tmp_path / "plots"
    small_dir.mkdir()
    for i in range(20):
        (small_dir / f"plot-{i}.txt").write_text(f"plot {i}\n")

    run_ids = []
    for n_estimators, depth in ((50, 3), (100, 5), (200, 7)):
        with mlflow.start_run(run_name=f"rf-{n_estimators}") as run:
            mlflow.log_params({"n_estimators": n_estimators, "max_depth": depth})
            mlflow.set_tag("team", "vision")
            for step in range(10):
                mlflow.log_metrics(
                    {
                        "loss": 1.0 / (step + 1) / depth,
                        "accuracy": 0.5 + depth * 0.05 + step * 0.001,
                    },
                    step=step,
                )
            run_ids.append(run.info.run_id)
    with mlflow.start_run(run_id=run_ids[-1]):
        mlflow.log_artifact(str(big))
        mlflow.log_artifacts(str(small_dir), artifact_path="plots")

    client = mlflow.MlflowClient()
    history = client.get_metric_history(run_ids[0], "loss")
    assert [m.step for m in history] == list(range(10))

    found = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="metrics.accuracy > 0.6 and params.max_depth != '3'",
        order_by=["metrics.accuracy DESC"],
    )
    assert list(found["run_id"]) == [run_ids[2], run_ids[1]]

    listed = {a.path for a in client.list_artifacts(run_ids[-1], "plots")}
    assert len(listed) == 20
    local = mlflow.artifacts.download_artifacts(
        run_id=run_ids[-1], artifact_path="weights.bin", dst_path=str(tmp_path / "down")
    )
    assert file_sha256(Path(local)) == file_sha256(big)


def test_register_and_load_champion(platform: Platform, mlflow_client_env: dict[str, str]) -> None:
    """The champion loads back from the registry through the proxy and predicts as trained.

    Loading, not serving: `mlflow models serve` of the champion is test_serving.py.
    """
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    mlflow.set_experiment("iris-registry")
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=42)
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=42)
    model.fit(x_train, y_train)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="iris-classifier",
            input_example=x_train[:2],
            serialization_format="cloudpickle",
        )
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    client.set_registered_model_alias("iris-classifier", "champion", version)
    assert client.get_model_version_by_alias("iris-classifier", "champion").version == str(version)

    loaded = mlflow.pyfunc.load_model("models:/iris-classifier@champion")
    predicted = np.asarray(loaded.predict(x_test))
    assert (predicted == model.predict(x_test)).all()
