"""Gates, approval, promotion and conflict-safe alias moves against the real stack."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.support.models import LENIENT, STRICT, register_versions
from tests.support.models import iris as _iris

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def governed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("registry")
    x, y = _iris()
    data = x.assign(target=y)
    data.to_csv(work / "holdout.csv", index=False)
    (work / "lenient.yaml").write_text(LENIENT)
    (work / "strict.yaml").write_text(STRICT)
    return {"dir": work, "uri": platform.client_env["MLFLOW_TRACKING_URI"]}


def new_model(platform: Platform, governed: dict[str, Any], mlflow_env: None = None) -> str:
    name = f"gov-{uuid.uuid4().hex[:8]}"
    for key, value in platform.client_env.items():
        os.environ[key] = value
    register_versions(governed["uri"], name)
    return name


def cli(platform: Platform, *args: str) -> Any:
    return platform.cli(*args, check=False, env={**os.environ, **platform.client_env})


def aliases(uri: str, name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(uri).get_registered_model(name).aliases)


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


def _worker(
    client_env: dict[str, str],
    name: str,
    role: str,
    version: str,
    dataset: str,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    os.environ.update(client_env)
    from mlops_platform import registry as reg

    registry = reg.Registry(client_env["MLFLOW_TRACKING_URI"], actor=f"worker-{role}")
    for round_no in range(rounds):
        barrier.wait(timeout=120)  # the main process has reset @champion to v1
        try:
            if role.startswith("cas"):
                move = registry.move_alias(name, "champion", version, expected="1")
                outcome = f"moved:{move.after}"
            else:
                res = registry.promote(
                    name, Path(dataset), metric="accuracy", challenger=version, retries=5
                )
                outcome = f"promoted:{version}" if res.promoted else f"kept:{res.champion}"
        except reg.PlatformError as exc:
            outcome = type(exc).__name__
            if type(exc) is reg.RegistryError:  # unexpected: keep the message for the report
                outcome += f": {exc}"
        results.put((round_no, role, outcome))
        barrier.wait(timeout=120)  # the main process checks


def _run_rounds(
    platform: Platform,
    name: str,
    roles: dict[str, str],
    dataset: str,
    rounds: int,
    check: Any,
) -> list[tuple[int, str, str]]:
    from mlops_platform import registry as reg

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(roles) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(platform.client_env, name, role, v, dataset, rounds, barrier, results),
        )
        for role, v in roles.items()
    ]
    for p in procs:
        p.start()
    registry = reg.Registry(platform.client_env["MLFLOW_TRACKING_URI"], actor="test-reset")
    seen: list[tuple[int, str, str]] = []
    try:
        for round_no in range(rounds):
            current = registry.alias_version(name, "champion")
            if current != "1":
                registry.move_alias(name, "champion", "1", expected=current)
            barrier.wait(timeout=180)
            barrier.wait(timeout=180)
            got = [results.get(timeout=30) for _ in roles]
            assert {r[0] for r in got} == {round_no}
            check(round_no, {role: outcome for _, role, outcome in got})
            seen += got
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return seen


def _champion_chain(history: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["before"], e["after"]) for e in history if e["event"] == "alias_moved"
            and e["alias"] == "champion"]  # fmt: skip


def test_concurrent_promotions_leave_one_approved_champion(
    platform: Platform, governed: dict[str, Any], mlflow_client_env: dict[str, str]
) -> None:
    from mlops_platform import registry as reg

    name = new_model(platform, governed)
    uri = governed["uri"]
    lenient = str(governed["dir"] / "lenient.yaml")
    for v in ("1", "2", "3"):  # v4 (the best scorer) is never approved
        assert cli(platform, "registry", "approve", name, v, "--gates", lenient).returncode == 0
    registry = reg.Registry(uri, actor="test")
    registry.move_alias(name, "champion", "1", expected=None)
    rounds = int(os.environ.get("MLOPS_TEST_RACE_ROUNDS", "10"))
    started = time.monotonic()

    # 1. the bare compare-and-set: two processes move @champion from v1 at the same instant
    def one_winner(round_no: int, outcome: dict[str, str]) -> None:
        winners = [o for o in outcome.values() if o.startswith("moved:")]
        assert len(winners) == 1, (round_no, outcome)
        assert sorted(outcome.values()) == sorted([winners[0], "PromotionConflictError"])
        assert registry.alias_version(name, "champion") == winners[0].split(":")[1]

    cas = _run_rounds(platform, name, {"cas-a": "2", "cas-b": "3"}, "", rounds, one_winner)
    assert {o for _, _, o in cas} >= {"PromotionConflictError"}

    # 2. full promotions: v2 and v3 (approved) and v4 (unapproved) race from champion v1
    def best_approved_wins(round_no: int, outcome: dict[str, str]) -> None:
        assert outcome["unapproved"] == "NotApprovedError", outcome
        assert registry.alias_version(name, "champion") == "3", (round_no, outcome)
        assert outcome["strong"] == "promoted:3" or outcome["strong"].startswith("kept:3")
        assert outcome["medium"] in ("promoted:2", "kept:3"), outcome

    dataset = str(governed["dir"] / "holdout.csv")
    _run_rounds(
        platform,
        name,
        {"medium": "2", "strong": "3", "unapproved": "4"},
        dataset,
        rounds,
        best_approved_wins,
    )
    history = registry.history(name)
    chain = _champion_chain([{**e.data, "event": e.event} for e in history])
    # every move starts where the previous one ended: no lost or interleaved update
    assert all(prev[1] == nxt[0] for prev, nxt in zip(chain, chain[1:], strict=False)), chain
    assert chain[-1][1] == registry.alias_version(name, "champion") == "3"
    assert "4" not in {after for _, after in chain}
    assert not any(k.startswith(reg.LOCK_PREFIX) for k in aliases(uri, name))
    from mlflow import MlflowClient

    leftover = MlflowClient(uri).search_registered_models(f"name = '{reg.LOCK_PREFIX}{name}'")
    assert leftover == []
    print(f"race rounds: {rounds} x 2 in {time.monotonic() - started:.1f} s")


def artifact_key(platform: Platform, uri: str, name: str, version: str, file: str) -> str:
    """The S3 key of one of the version's files, found by listing the stack's bucket."""
    from mlflow import MlflowClient

    from mlops_platform import s3

    location = MlflowClient(uri).get_model_version_download_uri(name, version)
    tail = location.split(":", 1)[1].lstrip("/").rstrip("/") + "/" + file
    client = s3.client(platform.settings, timeout=60)
    settings = platform.settings
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.s3_bucket, Prefix=settings.s3_prefix + "/"
        )
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(tail)
    ]
    assert len(keys) == 1, (location, keys)
    return keys[0]


def overwrite_in_s3(platform: Platform, key: str, change: Any) -> None:
    """Rewrite one object straight in the bucket with the stack's own keys (no MLflow)."""
    from mlops_platform import s3

    client = s3.client(platform.settings, timeout=60)
    body = client.get_object(Bucket=platform.settings.s3_bucket, Key=key)["Body"].read()
    client.put_object(Bucket=platform.settings.s3_bucket, Key=key, Body=change(body))


def _approve_versions(platform: Platform, name: str, lenient: str) -> dict[str, Any]:
    approvals = {}
    for v in ("1", "2", "3", "4"):
        result = cli(platform, "registry", "approve", name, v, "--gates", lenient, "--json")
        assert result.returncode == 0, result.stderr
        approvals[v] = json.loads(result.stdout)
    return approvals


def _check_the_pin(
    client: Any, uri: str, name: str, approvals: dict[str, Any], tmp_path: Path
) -> None:
    from mlflow.artifacts import download_artifacts

    from mlops_platform import registry as reg

    tags = client.get_model_version(name, "3").tags
    # the tag is the documented digest of a plain download of the version's files
    local = download_artifacts(
        artifact_uri=client.get_model_version_download_uri(name, "3"),
        dst_path=str(tmp_path),
        tracking_uri=uri,
    )
    recomputed = reg.digest_tree(Path(local))
    assert tags[reg.DIGEST_TAG] == recomputed.digest == approvals["3"]["artifacts_digest"]
    assert "model.pkl" in recomputed.files and "MLmodel" in recomputed.files
    assert approvals["3"]["artifacts_files"] == len(recomputed.files) >= 3
    assert tags[reg.DIGEST_TAG] != client.get_model_version(name, "2").tags[reg.DIGEST_TAG]


def _check_a_changed_version_is_refused(
    platform: Platform, client: Any, uri: str, name: str, holdout: str
) -> None:
    from mlops_platform import registry as reg

    # v3's model.pkl is rewritten in the bucket, same size, one byte flipped
    key = artifact_key(platform, uri, name, "3", "model.pkl")

    def flip(body: bytes) -> bytes:
        mid = len(body) // 2
        return body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]

    overwrite_in_s3(platform, key, flip)
    verify = cli(platform, "registry", "verify", name, "3")
    assert verify.returncode == 2, (verify.stdout, verify.stderr)
    assert "changed: model.pkl" in verify.stderr

    refused = cli(platform, "registry", "promote", name, "--challenger", "3",
                  "--dataset", holdout, "--metric", "accuracy")  # fmt: skip
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    err = refused.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert f"the artifacts of {name} v3 changed after its approval (changed: model.pkl" in err
    assert f"approve it again: mlops-platform registry approve {name} 3" in err
    assert aliases(uri, name) == {"staging": "4", "champion": "1"}
    # any alias move that requires approval refuses it too, and leaves no lock behind
    registry = reg.Registry(uri, actor="pin-test")
    with pytest.raises(reg.ArtifactsChangedError, match=f"{name} v3 changed"):
        registry.move_alias(name, "challenger", "3", expected=None)
    assert "challenger" not in aliases(uri, name)
    assert client.search_registered_models(f"name = '{reg.LOCK_PREFIX}{name}'") == []


def _check_an_unpinned_version_waits_for_approval(
    platform: Platform, client: Any, uri: str, name: str, lenient: str, holdout: str
) -> None:
    from mlops_platform import registry as reg

    # approved before pinning existed (no digest tag): refused until approved again
    client.delete_model_version_tag(name, "4", reg.DIGEST_TAG)
    old = cli(platform, "registry", "promote", name, "--challenger", "4",
              "--dataset", holdout, "--metric", "accuracy")  # fmt: skip
    assert old.returncode == 2 and "\n" not in old.stderr.strip(), old.stderr
    assert f"{name} v4 was approved before approvals pinned artifacts" in old.stderr
    assert f"approve it again: mlops-platform registry approve {name} 4" in old.stderr
    assert aliases(uri, name)["champion"] == "2"
    # the fix the message names works
    again = cli(platform, "registry", "approve", name, "4", "--gates", lenient)
    assert again.returncode == 0 and "artifacts pinned: sha256:" in again.stdout, again.stderr
    fixed = cli(platform, "registry", "promote", name, "--challenger", "4",
                "--dataset", holdout, "--metric", "accuracy")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert aliases(uri, name)["champion"] == "4"


def test_approval_pins_the_artifacts_and_promote_refuses_changed_files(
    platform: Platform, governed: dict[str, Any], mlflow_client_env: dict[str, str], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    name = new_model(platform, governed)
    uri = governed["uri"]
    lenient = str(governed["dir"] / "lenient.yaml")
    holdout = str(governed["dir"] / "holdout.csv")
    approvals = _approve_versions(platform, name, lenient)
    client = MlflowClient(uri)
    _check_the_pin(client, uri, name, approvals, tmp_path)
    ok = cli(platform, "registry", "promote", name, "--challenger", "1", "--initial",
             "--dataset", holdout, "--metric", "accuracy")  # fmt: skip
    assert ok.returncode == 0, ok.stderr

    _check_a_changed_version_is_refused(platform, client, uri, name, holdout)

    # the untouched version promotes
    moved = cli(platform, "registry", "promote", name, "--challenger", "2",
                "--dataset", holdout, "--metric", "accuracy", "--json")  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["promoted"] and aliases(uri, name)["champion"] == "2"
    good = cli(platform, "registry", "verify", name, "@champion", "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["artifacts_digest"] == approvals["2"]["artifacts_digest"]

    _check_an_unpinned_version_waits_for_approval(platform, client, uri, name, lenient, holdout)
    events = [e["event"] for e in json.loads(cli(platform, "registry", "history", name,
                                                 "--json").stdout)["events"]]  # fmt: skip
    assert events.count("alias_moved") == 4 + 3  # staging x4 (v1..v4), champion 1 -> 2 -> 4
