"""Serve the champion for real: `mlflow models serve` from the registry, POST /invocations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlops_platform import registry as reg
from mlops_platform.render.serving import model_uri, serve_argv
from tests.conftest import free_port
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

START_TIMEOUT = 180


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"mlflow models serve exited {proc.returncode}:\n{log.read_text()}"
            )
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"serving did not answer /ping in {START_TIMEOUT} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server this test started: its process group, politely, then firmly."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def test_champion_serves_the_models_own_predictions(
    platform: Platform, mlflow_client_env: dict[str, str], tmp_path: Path
) -> None:
    import mlflow

    name = f"served-{uuid.uuid4().hex[:8]}"
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=3).fit(x, y)
    mlflow.set_experiment("serving")
    with mlflow.start_run():
        mlflow.log_metric("accuracy", float((model.predict(x) == y).mean()))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=x.head(3),
            serialization_format="cloudpickle",
        )
    version = str(info.registered_model_version)
    uri = platform.client_env["MLFLOW_TRACKING_URI"]
    registry = reg.Registry(uri, actor="serving-test")
    approval = registry.approve(
        name,
        version,
        reg.Gates.from_mapping({"metrics": {"accuracy": ">= 0.9"}, "signature": True}),
    )
    assert approval.approved
    holdout = tmp_path / "holdout.csv"
    x.assign(target=y).to_csv(holdout, index=False)
    promoted = registry.promote(name, holdout, metric="accuracy", challenger=version, initial=True)
    assert promoted.promoted and registry.alias_version(name, "champion") == version

    port = free_port()
    argv = serve_argv(model_uri(name, "champion"), port=port)
    assert platform.password not in " ".join(argv)
    # mlflow execs `uvicorn` by name: the interpreter's bin folder must be on PATH, as it
    # is in an activated virtualenv or the serving image
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **platform.client_env, "PATH": path}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        sample = x.sample(40, random_state=7)
        response = requests.post(
            f"{url}/invocations",
            json={"dataframe_split": sample.to_dict(orient="split")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        served = response.json()["predictions"]
        assert served == model.predict(sample).tolist()
        # the signature is enforced: a missing column is refused, not guessed
        bad = requests.post(
            f"{url}/invocations",
            json={"dataframe_split": sample.drop(columns=["petal_width"]).to_dict(orient="split")},
            timeout=30,
        )
        assert bad.status_code == 400 and "petal_width" in bad.text
    finally:
        stop(proc)
    assert platform.password not in log.read_text()
