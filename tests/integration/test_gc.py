"""`mlops-platform gc` against a real stack of its own (it removes every deleted run of the
platform, which the session stack shared with other tests must not see): `scratch_stack`,
reset for this module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import shared_scratch
from tests.support.stacks import PrivateStack as Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, scratch_stack: Stack) -> Iterator[Stack]:
    yield from shared_scratch(request, scratch_stack)


def keys(stack: Stack, prefix: str = "") -> list[str]:
    """Every key under the artifact prefix, listed with boto3 directly."""
    client = stack.s3()
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=stack.settings.s3_bucket, Prefix=f"{stack.settings.s3_prefix}/{prefix}"
    ):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


def make_entities(stack: Stack, name: str) -> dict[str, Any]:
    """An experiment with a kept run, a deleted run with files, a deleted logged model; and a
    deleted experiment holding a run and a logged model."""
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    c = stack.client()
    mlflow.set_tracking_uri(stack.client_env["MLFLOW_TRACKING_URI"])
    try:
        exp = c.create_experiment(f"{name}-live")
        kept = c.create_run(exp)
        c.log_text(kept.info.run_id, "keep me", "kept.txt")
        gone = c.create_run(exp)
        for n in range(5):
            c.log_text(gone.info.run_id, "x" * 1000, f"data/{n}.txt")
        c.set_terminated(gone.info.run_id)
        c.delete_run(gone.info.run_id)
        mlflow.set_experiment(experiment_id=exp)
        with mlflow.start_run():
            model = mlflow.pyfunc.log_model(name="m", python_model=Echo(), pip_requirements=[])
        c.delete_logged_model(model.model_id)
        doomed = c.create_experiment(f"{name}-doomed")
        mlflow.set_experiment(experiment_id=doomed)
        with mlflow.start_run() as inner:
            mlflow.log_text("y", "inner.txt")
            inner_model = mlflow.pyfunc.log_model(
                name="m2", python_model=Echo(), pip_requirements=[]
            )
        c.delete_experiment(doomed)
    finally:
        mlflow.set_tracking_uri("")
    return {
        "exp": exp,
        "kept": kept.info.run_id,
        "gone": gone.info.run_id,
        "model": model.model_id,
        "doomed": doomed,
        "inner": inner.info.run_id,
        "inner_model": inner_model.model_id,
    }


def _report(result: Any) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith("{"), (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def _ids(report: dict[str, Any], kind: str) -> set[str]:
    return {i["id"] for i in report["items"] if i["kind"] == kind}


def test_dry_run_lists_and_removes_nothing_then_gc_removes_and_reports_leftovers(
    stack: Stack,
) -> None:
    from mlflow.exceptions import MlflowException

    e = make_entities(stack, "first")
    before = keys(stack)
    assert keys(stack, f"{e['exp']}/{e['gone']}/")
    assert keys(stack, f"{e['exp']}/models/{e['model']}/")

    dry = stack.cli("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = _report(dry)
    assert plan["dry_run"]
    assert _ids(plan, "run") == {e["gone"], e["inner"]}
    assert _ids(plan, "logged_model") == {e["model"], e["inner_model"]}
    assert _ids(plan, "experiment") == {e["doomed"]}
    assert keys(stack) == before  # nothing removed from the store ...
    assert stack.client().get_run(e["gone"]).info.lifecycle_stage == "deleted"  # ... nor the DB
    human = stack.cli("gc", "--dry-run", COLUMNS="200")
    assert human.returncode == 0 and "would remove" in human.stdout and e["gone"] in human.stdout

    # a newer age limit than anything here removes nothing
    young = _report(stack.cli("gc", "--older-than", "1d", "--json"))
    assert young["items"] == [] and keys(stack) == before

    done = stack.cli("gc", "--json")
    report = _report(done)
    assert not report["dry_run"] and _ids(report, "run") == {e["gone"], e["inner"]}
    for run_id in (e["gone"], e["inner"]):
        with pytest.raises(MlflowException):
            stack.client().get_run(run_id)
    # the deleted run's files are gone, checked in the store itself
    assert keys(stack, f"{e['exp']}/{e['gone']}/") == []
    # what is still there is reported exactly, and the exit code says so
    left = sorted(report["leftovers"])
    actual = sorted(
        keys(stack, f"{e['exp']}/{e['gone']}/")
        + keys(stack, f"{e['exp']}/models/{e['model']}/")
        + keys(stack, f"{e['doomed']}/")
    )
    assert left == actual
    # MLflow 3.17's gc drops the logged models of a removed experiment from the database
    # but never deletes their files (docs/backup.md says so): exactly those are reported
    assert left and all(f"/models/{e['inner_model']}/" in k for k in left), left
    assert done.returncode == (1 if left else 0)
    # the kept run is untouched
    assert keys(stack, f"{e['exp']}/{e['kept']}/") == [
        f"{stack.settings.s3_prefix}/{e['exp']}/{e['kept']}/artifacts/kept.txt"
    ]
    assert stack.client().get_run(e["kept"]).info.lifecycle_stage == "active"


def test_purge_leftovers_leaves_nothing_of_removed_entities(stack: Stack) -> None:
    e = make_entities(stack, "second")
    kept_before = keys(stack, f"{e['exp']}/{e['kept']}/")
    leftovers_of_first = keys(stack)  # whatever the first test left is not ours to judge
    done = stack.cli("gc", "--purge-leftovers", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done)
    assert report["leftovers"] == []
    assert keys(stack, f"{e['exp']}/{e['gone']}/") == []
    assert keys(stack, f"{e['exp']}/models/{e['model']}/") == []
    assert keys(stack, f"{e['doomed']}/") == []
    assert keys(stack, f"{e['exp']}/{e['kept']}/") == kept_before
    assert set(keys(stack)) <= set(leftovers_of_first)


def test_bad_age_is_one_line_exit_2(stack: Stack) -> None:
    result = stack.cli("gc", "--older-than", "a week", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "30d" in result.stderr


def test_gc_never_overlaps_a_backup(stack: Stack) -> None:
    """While `backup create` holds the backup folder's lock, gc refuses and removes nothing."""
    import fcntl

    from mlops_platform import backup

    c = stack.client()
    run = c.create_run(c.create_experiment("gc-during-backup"))
    c.delete_run(run.info.run_id)
    root = backup.backup_root(stack.settings)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = stack.cli("gc")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "a backup, restore or prune is working" in lines[0], lines
    assert c.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert _ids(_report(stack.cli("gc", "--json")), "run") == {run.info.run_id}
