"""Approval pins the artifacts; promote refuses a version whose files changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.integration.registry.support import aliases, cli, new_model

pytestmark = pytest.mark.integration


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
