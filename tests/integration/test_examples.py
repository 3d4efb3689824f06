"""Every script in examples/ runs against the local stack and does what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(platform: Platform, cwd: Path, script: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env={**os.environ, **platform.client_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{script}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_examples_from_a_run_to_a_champion(platform: Platform, tmp_path: Path) -> None:
    name = f"examples-{uuid.uuid4().hex[:6]}"
    experiment = f"examples-{uuid.uuid4().hex[:6]}"
    baseline = run_example(
        platform, tmp_path, "01_sklearn_baseline.py",
        "--model-name", name, "--experiment", experiment, "--holdout", "holdout.csv",
    )  # fmt: skip
    assert baseline["version"] == "1" and (tmp_path / "holdout.csv").exists()

    auto = run_example(
        platform, tmp_path, "02_autolog.py", "--model-name", name, "--experiment", experiment
    )
    assert auto["version"] == "2"
    assert {"best_n_estimators", "best_max_depth", "cv"} <= set(auto["logged_params"])
    assert auto["child_runs"] >= 1  # autolog recorded the tuning runs

    found = run_example(
        platform, tmp_path, "03_search_runs.py", "--experiment", experiment, "--metric", "accuracy"
    )
    assert found["best_run_id"] == auto["run_id"]
    assert found["ordered"] == sorted(found["ordered"], reverse=True)

    promoted = run_example(
        platform, tmp_path, "04_approve_and_promote.py",
        "--model-name", name, "--champion", "1", "--challenger", "2",
        "--holdout", "holdout.csv", "--gates", str(EXAMPLES / "gates.yaml"),
    )  # fmt: skip
    assert promoted["promoted"] is True and promoted["challenger"] == "2"
    assert promoted["champion"] == "1"
    assert promoted["history"][-1] == "alias_moved:2"
    history = platform.cli(
        "registry", "history", name, "--json", env={**os.environ, **platform.client_env}
    )
    events = [e["event"] for e in json.loads(history.stdout)["events"]]
    assert events.count("approved") == 2 and events[-1] == "alias_moved"


def test_pytorch_example(
    platform: Platform, tmp_path: Path, mlflow_client_env: dict[str, str]
) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.fail(
            "examples/05_pytorch.py needs torch: pip install torch==2.13.0 (the CPU wheel; "
            "`make install` installs it with the test extra)",
            pytrace=False,
        )
    out = run_example(
        platform, tmp_path, "05_pytorch.py", "--epochs", "25",
        "--model-name", f"torch-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    assert out["version"] == "1" and out["reloaded_predictions_match"] is True
    assert out["accuracy"] > 0.8
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_client_env["MLFLOW_TRACKING_URI"])
    for metric in ("train_loss", "val_loss", "accuracy"):
        history = client.get_metric_history(out["run_id"], metric)
        assert sorted(m.step for m in history) == list(range(25)), metric
    losses = [m.value for m in sorted(client.get_metric_history(out["run_id"], "train_loss"),
                                      key=lambda m: m.step)]  # fmt: skip
    assert losses[-1] < losses[0]  # it learned
