"""Several real training processes, one run: only rank 0 reaches the tracking server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

WORLD_SIZE = 3
EPOCHS = 5
WORKER = """
import json, os, sys
from mlops_platform.distributed import RankZeroLogger

log = RankZeroLogger()
before = "mlflow" in sys.modules
with log.start_run(run_name=sys.argv[1]) as run:
    if log.is_main:
        import mlflow
        mlflow.set_experiment  # noqa: B018 - rank 0 may use mlflow freely
    log.log_params({"world_size": log.rank.world_size, "lr": 0.1})
    loss = 1.0
    for epoch in range(int(sys.argv[2])):
        loss *= 0.5 + 0.1 * log.rank.rank  # every rank trains on its own shard
        log.log_metric("loss", loss, step=epoch)
    log.set_tags({"launcher": "test", "rank_that_logged": str(log.rank.rank)})
print(json.dumps({
    "rank": log.rank.rank,
    "mlflow_imported_before": before,
    "mlflow_imported": "mlflow" in sys.modules,
    "run_id": run.info.run_id if run else None,
}))
"""


def test_only_rank_zero_logs(
    platform: Platform, mlflow_client_env: dict[str, str], tmp_path: Path
) -> None:
    import mlflow

    experiment = f"distributed-{uuid.uuid4().hex[:6]}"
    experiment_id = mlflow.create_experiment(experiment)
    run_name = f"ddp-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "train.py"
    script.write_text(WORKER)
    env = {**os.environ, **platform.client_env, "MLFLOW_EXPERIMENT_ID": experiment_id}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), run_name, str(EPOCHS)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(WORLD_SIZE)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(WORLD_SIZE)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    by_rank = {r["rank"]: r for r in reports}
    assert sorted(by_rank) == list(range(WORLD_SIZE))
    for rank in range(1, WORLD_SIZE):
        assert by_rank[rank]["mlflow_imported"] is False, by_rank[rank]
        assert by_rank[rank]["run_id"] is None
    assert by_rank[0]["run_id"]

    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")
    assert [r.info.run_id for r in runs] == [by_rank[0]["run_id"]]
    run = runs[0]
    assert run.info.run_name == run_name
    assert run.data.params == {"world_size": str(WORLD_SIZE), "lr": "0.1"}
    assert run.data.tags["rank_that_logged"] == "0"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(EPOCHS))
    assert [m.value for m in history] == pytest.approx([0.5 ** (e + 1) for e in range(EPOCHS)])
