"""Gates pass and fail; bad input names the problem and moves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.integration.registry.support import aliases, cli, new_model
from tests.support.models import iris as _iris

pytestmark = pytest.mark.integration


def test_gates_pass_and_fail(
    platform: Platform, governed: dict[str, Any], mlflow_client_env: dict[str, str]
) -> None:
    from mlflow import MlflowClient

    name = new_model(platform, governed)
    strict = str(governed["dir"] / "strict.yaml")
    failed = cli(platform, "registry", "approve", name, "2", "--gates", strict, "--json")
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert report["status"] == "rejected" and report["staging_moved"] is False
    gate = next(g for g in report["gates"] if g["gate"] == "metric.accuracy")
    assert not gate["passed"] and "short by" in gate["detail"]
    assert gate["shortfall"] == pytest.approx(0.9 - 2 / 3, abs=0.01)
    assert all(g["passed"] for g in report["gates"] if g["gate"] != "metric.accuracy")
    assert "staging" not in aliases(governed["uri"], name)
    tags = MlflowClient(governed["uri"]).get_model_version(name, "2").tags
    assert tags["mlops.status"] == "rejected"
    assert tags["mlops.gate.metric.accuracy"].startswith("fail: accuracy = 0.666")
    assert tags["mlops.gate.signature"].startswith("pass")
    assert tags["mlops.reviewed_by"] and tags["mlops.reviewed_at"]

    human = cli(platform, "registry", "approve", name, "3", "--gates", strict)
    assert human.returncode == 0, human.stderr
    assert "approved by" in human.stdout and "@staging set to v3" in human.stdout
    assert aliases(governed["uri"], name)["staging"] == "3"
    tags = MlflowClient(governed["uri"]).get_model_version(name, "3").tags
    assert tags["mlops.status"] == "approved" and tags["mlops.approved_by"]

    # an untagged version fails the tag gate; a tiny size limit fails the size gate
    MlflowClient(governed["uri"]).delete_model_version_tag(name, "4", "team")
    tiny = governed["dir"] / "tiny.yaml"
    tiny.write_text("tags: [team]\nmax_size_mb: 0.0001\n")
    result = cli(platform, "registry", "approve", name, "4", "--gates", str(tiny), "--json")
    gates = {g["gate"]: g for g in json.loads(result.stdout)["gates"]}
    assert result.returncode == 1
    assert not gates["tag.team"]["passed"] and "over by" in gates["size"]["detail"]
    assert aliases(governed["uri"], name)["staging"] == "3"

    history = json.loads(cli(platform, "registry", "history", name, "--json").stdout)["events"]
    assert [e["event"] for e in history] == ["rejected", "approved", "alias_moved", "rejected"]


def test_bad_input_names_the_problem_and_moves_nothing(
    platform: Platform, governed: dict[str, Any], mlflow_client_env: dict[str, str]
) -> None:
    name = new_model(platform, governed)
    d: Path = governed["dir"]
    lenient = str(d / "lenient.yaml")
    for v in ("1", "2"):
        assert cli(platform, "registry", "approve", name, v, "--gates", lenient).returncode == 0
    holdout = str(d / "holdout.csv")
    x, y = _iris()
    parquet = d / f"{name}.parquet"
    x.assign(target=y).to_parquet(parquet)
    # no champion yet: the first one needs --initial, and nothing moves without it
    first = cli(platform, "registry", "promote", name, "--challenger", "1",
                "--dataset", str(parquet), "--metric", "accuracy")  # fmt: skip
    assert first.returncode == 2 and "has no @champion alias" in first.stderr, first.stderr
    assert "--initial" in first.stderr and "champion" not in aliases(governed["uri"], name)
    ok = cli(platform, "registry", "promote", name, "--challenger", "1", "--initial",
             "--dataset", str(parquet), "--metric", "accuracy", "--json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["challenger_score"] == pytest.approx(1 / 3)
    before = aliases(governed["uri"], name)
    assert before == {"staging": "2", "champion": "1"}

    (d / "typo-key.yaml").write_text("metric:\n  accuracy: '>= 0.5'\n")
    (d / "typo-op.yaml").write_text("metrics:\n  accuracy: '=> 0.5'\n")
    (d / "typo-metric.yaml").write_text("metrics:\n  acurracy: '>= 0.5'\n")
    d.joinpath("wrong-columns.csv").write_text("f0,f1,petal,target\n1,2,3,0\n")
    d.joinpath("no-target.csv").write_text("f0,f1,f2,f3\n1,2,3,4\n")
    cases = {
        "registered model 'nope-": ["registry", "approve", f"nope-{name}", "1", "--gates", lenient],
        "has no version 99 (versions: 1, 2, 3, 4)": [
            "registry", "approve", name, "99", "--gates", lenient],
        "unknown key 'metric'": ["registry", "approve", name, "3", "--gates",
                                 str(d / "typo-key.yaml")],
        "bad operator '=>' for metric 'accuracy'": [
            "registry", "approve", name, "3", "--gates", str(d / "typo-op.yaml")],
        "metric 'acurracy' in the gates file is not logged": [
            "registry", "approve", name, "3", "--gates", str(d / "typo-metric.yaml")],
        "cannot read gates file": ["registry", "approve", name, "3", "--gates",
                                   str(d / "absent.yaml")],
        "has no @challenger alias": [
            "registry", "promote", name, "--dataset", holdout, "--metric", "accuracy"],
        "missing f2, f3; unexpected petal": [
            "registry", "promote", name, "--challenger", "2", "--dataset",
            str(d / "wrong-columns.csv"), "--metric", "accuracy"],
        "no target column 'target'": [
            "registry", "promote", name, "--challenger", "2", "--dataset",
            str(d / "no-target.csv"), "--metric", "accuracy"],
        "v3 is not approved": [
            "registry", "promote", name, "--challenger", "3", "--dataset", holdout,
            "--metric", "accuracy"],
        "unknown metric 'auc'": [
            "registry", "promote", name, "--challenger", "2", "--dataset", holdout,
            "--metric", "auc"],
        "registered model 'ghost' does not exist": ["registry", "history", "ghost"],
        "registered model 'ghost-": [
            "registry", "promote", f"ghost-{name}", "--challenger", "1", "--dataset", holdout,
            "--metric", "accuracy"],
        "has no version 99 (versions": [
            "registry", "promote", name, "--challenger", "99", "--dataset", holdout,
            "--metric", "accuracy"],
        "dataset nowhere.parquet does not exist": [
            "registry", "promote", name, "--challenger", "2", "--dataset", "nowhere.parquet",
            "--metric", "accuracy"],
    }  # fmt: skip
    for expected, args in cases.items():
        result = cli(platform, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        err = result.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert "Traceback" not in result.stderr
        assert expected in err, (expected, err)
    assert aliases(governed["uri"], name) == before
    from mlflow import MlflowClient

    assert "mlops.status" not in MlflowClient(governed["uri"]).get_model_version(name, "3").tags
