"""Serve the champion for real: `mlflow models serve` from the registry, POST /invocations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlops_platform import registry as reg
from mlops_platform.render.serving import model_uri, serve_argv
from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.integration.test_docs_executed import check_invocations
from tests.support.models import log_version

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
    version, _ = log_version(model, name, x, y, example_rows=3)
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
        # docs/run-to-champion.md §7: every payload form it shows, answered as it shows
        assert check_invocations(url) >= 6
    finally:
        stop(proc)
    assert platform.password not in log.read_text()


def _start_entry(
    platform: Platform, name: str, port: int, model_dir: Path, log: Path
) -> subprocess.Popen[bytes]:
    """The serving image's command: `mlops-platform registry serve NAME --alias champion`."""
    from tests.integration.conftest import CLI

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **platform.client_env, "PATH": path}
    argv = [*CLI, "registry", "serve", name, "--alias", "champion", "--port", str(port),
            "--model-dir", str(model_dir)]  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _refused(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The entry's one-line refusal; it must exit before anything listens."""
    try:
        code = proc.wait(timeout=START_TIMEOUT)
    finally:
        stop(proc)
    text = log.read_text().strip()
    assert code == 2, text
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


def _register_a_model_and_an_impostor(name: str) -> tuple[Any, Any, Any, Any]:
    """(x, y, the real model: v1, a dummy: v2), both logged and registered as ``name``."""
    import mlflow
    from sklearn.dummy import DummyClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    good = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=3).fit(x, y)
    dummy = DummyClassifier(strategy="most_frequent").fit(x, y)
    mlflow.set_experiment("serving")
    for model in (good, dummy):  # v1 the real model, v2 an impostor never approved
        log_version(model, name, x, y, example_rows=3)
    return x, y, good, dummy


def _swap_the_pickle_of_v1_for_v2s(platform: Platform, client: Any, name: str) -> None:
    """Write v2's model.pkl over v1's in the bucket, as someone with its keys could."""
    from mlops_platform import s3

    settings = platform.settings
    bucket = s3.client(settings, timeout=60)

    def key_of(version: str) -> str:
        tail = client.get_model_version_download_uri(name, version).split(":", 1)[1].strip("/")
        found = [
            o["Key"]
            for page in bucket.get_paginator("list_objects_v2").paginate(
                Bucket=settings.s3_bucket, Prefix=settings.s3_prefix + "/"
            )
            for o in page.get("Contents", [])
            if o["Key"].endswith(tail + "/model.pkl")
        ]
        assert len(found) == 1, (tail, found)
        return found[0]

    impostor = bucket.get_object(Bucket=settings.s3_bucket, Key=key_of("2"))["Body"].read()
    bucket.put_object(Bucket=settings.s3_bucket, Key=key_of("1"), Body=impostor)


def test_serving_refuses_a_champion_whose_artifacts_changed_after_approval(
    platform: Platform, mlflow_client_env: dict[str, str], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    name = f"pinned-{uuid.uuid4().hex[:8]}"
    x, y, good, dummy = _register_a_model_and_an_impostor(name)
    uri = platform.client_env["MLFLOW_TRACKING_URI"]
    registry = reg.Registry(uri, actor="serving-test")
    gates = reg.Gates.from_mapping({"metrics": {"accuracy": ">= 0.9"}, "signature": True})
    assert registry.approve(name, "1", gates).approved
    holdout = tmp_path / "holdout.csv"
    x.assign(target=y).to_csv(holdout, index=False)
    assert registry.promote(name, holdout, metric="accuracy", challenger="1", initial=True).promoted

    # the entry serves the approved bytes
    port = free_port()
    log = tmp_path / "serve-1.log"
    proc = _start_entry(platform, name, port, tmp_path / "copy-1", log)
    url = f"http://127.0.0.1:{port}"
    sample = x.sample(40, random_state=7)
    try:
        wait_ready(url, proc, log)
        response = requests.post(
            f"{url}/invocations",
            json={"dataframe_split": sample.to_dict(orient="split")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == good.predict(sample).tolist()
    finally:
        stop(proc)
    assert f"serving {name} v1 (@champion)" in log.read_text()
    assert platform.password not in log.read_text()

    # someone with the bucket's keys swaps the champion's pickle for the impostor's
    client = MlflowClient(uri)
    _swap_the_pickle_of_v1_for_v2s(platform, client, name)
    log = tmp_path / "serve-2.log"
    err = _refused(_start_entry(platform, name, free_port(), tmp_path / "copy-2", log), log)
    assert f"the artifacts of {name} v1 changed after its approval (changed: model.pkl" in err
    assert f"approve it again: mlops-platform registry approve {name} 1" in err

    # a champion approved before pinning existed (no digest tag) is refused too
    client.delete_model_version_tag(name, "1", reg.DIGEST_TAG)
    log = tmp_path / "serve-3.log"
    err = _refused(_start_entry(platform, name, free_port(), tmp_path / "copy-3", log), log)
    assert f"{name} v1 was approved before approvals pinned artifacts" in err
    assert f"approve it again: mlops-platform registry approve {name} 1" in err

    # approving again is a person's decision on the files as they are now: then it serves
    assert registry.approve(name, "1", gates).approved  # the gates read the run's metrics
    port = free_port()
    log = tmp_path / "serve-4.log"
    proc = _start_entry(platform, name, port, tmp_path / "copy-4", log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": sample.to_dict(orient="split")},
            timeout=30,
        )
        assert response.json()["predictions"] == dummy.predict(sample).tolist()
    finally:
        stop(proc)
