"""Gates files, metric checks, scores and dataset/signature matching (no server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_platform import registry as reg


def gates(text: str, tmp_path: Path) -> reg.Gates:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    return reg.Gates.load(path)


def test_full_gates_file(tmp_path: Path) -> None:
    g = gates(
        "metrics:\n  accuracy: '>= 0.9'\n  rmse: '< 0.5'\n  f1: 0.8\n"
        "tags: {team: vision, dataset: null}\nsignature: true\nmax_size_mb: 25\n",
        tmp_path,
    )
    assert g.metrics == (
        reg.MetricGate("accuracy", ">=", 0.9),
        reg.MetricGate("rmse", "<", 0.5),
        reg.MetricGate("f1", ">=", 0.8),
    )
    assert g.required_tags == {"team": "vision", "dataset": None}
    assert g.signature is True and g.max_size_mb == 25.0
    assert gates("tags: [team]\n", tmp_path).required_tags == {"team": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric:\n  accuracy: '>= 0.9'\n", "unknown key 'metric'"),
        ("metrics:\n  accuracy: '=> 0.9'\n", "bad operator '=>' for metric 'accuracy'"),
        ("metrics:\n  accuracy: '>== 0.9'\n", "bad operator"),
        ("metrics:\n  accuracy: '~ 0.9'\n", "bad operator '~'"),
        ("metrics:\n  accuracy: '>= high'\n", "threshold 'high' for metric 'accuracy'"),
        ("metrics:\n  accuracy: [1]\n", "must be like '>= 0.9'"),
        ("metrics: [accuracy]\n", "must map a metric"),
        ("tags: team\n", "`tags`"),
        ("signature: yes please\n", "`signature`"),
        ("max_size_mb: -1\n", "`max_size_mb`"),
        ("- a\n- b\n", "must be a mapping"),
        ("metrics: {a: '>= 1'\n", "not valid YAML at line"),
    ],
)
def test_typos_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(reg.GatesFileError) as err:
        gates(text, tmp_path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(reg.GatesFileError, match="cannot read gates file"):
        reg.Gates.load(tmp_path / "none.yaml")


def test_metric_gate_says_by_how_much() -> None:
    ok = reg.MetricGate("accuracy", ">=", 0.9).check(0.93)
    assert ok.passed and ok.shortfall is None
    bad = reg.MetricGate("accuracy", ">=", 0.9).check(0.85)
    assert not bad.passed and bad.shortfall == pytest.approx(0.05)
    assert bad.detail == "accuracy = 0.85, needs >= 0.9 (short by 0.05)"
    assert bad.tag_value().startswith("fail: ")
    assert not reg.MetricGate("rmse", "<", 0.5).check(0.5).passed
    assert reg.MetricGate("rmse", "<", 0.5).check(0.49).passed


def test_scores() -> None:
    assert reg.score("accuracy", [0, 1, 1, 2], np.array([0, 1, 2, 2])) == 0.75
    assert reg.score("rmse", [1.0, 2.0], [1.0, 4.0]) == pytest.approx(np.sqrt(2))
    assert reg.score("mae", [1.0, 2.0], [2.0, 4.0]) == 1.5
    assert reg.score("r2", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    with pytest.raises(reg.DatasetError, match="unknown metric 'auc'"):
        reg.score("auc", [1], [1])


def test_dataset_columns_against_signature() -> None:
    from mlflow.models import infer_signature

    train = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    sig = infer_signature(train, np.array([0, 1]))
    swapped = pd.DataFrame({"b": [1.0], "a": [2.0]})
    assert list(reg.features_for(sig, swapped, where="m v1").columns) == ["a", "b"]
    with pytest.raises(reg.DatasetError, match="missing b; unexpected c"):
        reg.features_for(sig, pd.DataFrame({"a": [1.0], "c": [2.0]}), where="m v1")
    tensor = infer_signature(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(reg.DatasetError, match="has 2 feature columns but m v1 expects 3"):
        reg.features_for(tensor, train, where="m v1")
    assert reg.features_for(tensor, pd.DataFrame(np.ones((1, 3))), where="m").shape == (1, 3)


def test_unreadable_dataset(tmp_path: Path) -> None:
    with pytest.raises(reg.DatasetError, match="does not exist"):
        reg.read_dataset(tmp_path / "x.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(reg.DatasetError, match="cannot read dataset"):
        reg.read_dataset(bad)


def test_parquet_and_csv_read_the_same(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(reg.read_dataset(tmp_path / "d.csv"), frame)
    pd.testing.assert_frame_equal(reg.read_dataset(tmp_path / "d.parquet"), frame)


def test_server_errors_are_one_line_with_a_fix() -> None:
    refused = Exception(
        "API request to http://h/api failed with exception HTTPConnectionPool(host='h', "
        "port=9): Max retries exceeded with url: /x (Caused by NewConnectionError(...))"
    )
    err = reg.server_error("read registered model 'm'", refused, "http://h")
    assert str(err).startswith("cannot read registered model 'm': the tracking server at http://h")
    assert "mlops-platform status" in str(err)
    login = reg.server_error("read m v1", Exception("failed with error code 401 != 200"), "u")
    assert "refused the login" in str(login) and "MLFLOW_TRACKING_PASSWORD" in str(login)
    other = reg.server_error("read m v1", Exception("boom\nline two"), "u")
    assert str(other) == "cannot read m v1: boom"


class _Contended(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.error_code = code


class _LockClient:
    """The answers MLflow's store gives a lock create that races a holder's release."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.tags: dict[str, str] = {}

    def create_registered_model(self, name: str, tags: dict[str, str], description: str) -> None:
        if self.failures:
            raise _Contended(self.failures.pop(0))
        self.tags = dict(tags)

    def get_registered_model(self, name: str):  # type: ignore[no-untyped-def]
        if not self.tags:
            raise _Contended("RESOURCE_DOES_NOT_EXIST")
        return type("Model", (), {"tags": self.tags})()

    def delete_registered_model(self, name: str) -> None:
        self.tags = {}


def test_lock_retries_a_create_that_raced_a_release() -> None:
    client = _LockClient(["RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"])
    registry = reg.Registry("http://unused", client=client, lock_wait_seconds=5)  # type: ignore[arg-type]
    with registry.lock("m") as token:
        assert client.tags["token"] == token
    assert client.tags == {}
    broken = reg.Registry("http://unused", client=_LockClient(["INTERNAL_ERROR"]))  # type: ignore[arg-type]
    with pytest.raises(reg.RegistryError, match="cannot take the lock of 'm'"), broken.lock("m"):
        pass


def test_decide_promotes_only_a_challenger_better_by_the_margin() -> None:
    def decide(champion: str | None, champion_score: float | None, challenger_score: float,
               *, metric: str = "accuracy", margin: float = 0.0) -> reg.Decision:  # fmt: skip
        return reg.decide(
            metric=metric, margin=margin, champion=champion, challenger="2",
            champion_score=champion_score, challenger_score=challenger_score,
        )  # fmt: skip

    assert decide("2", None, 0.9) == reg.Decision("already", "v2 is already the champion")
    first = decide(None, None, 0.9)
    assert first == reg.Decision("promote", "v2 accuracy=0.9 beats no champion")
    assert decide("1", 0.8, 0.9).action == "promote"
    assert decide("1", 0.9, 0.9).action == "keep"  # a tie is not better, even at margin 0
    kept = decide("1", 0.8, 0.85, margin=0.1)
    assert kept.action == "keep"
    assert kept.reason == (
        "challenger v2 accuracy=0.85 is not better than champion v1 accuracy=0.8 by 0.1"
    )
    assert decide("1", 0.5, 0.75, margin=0.25).action == "promote"  # gain == margin
    # lower is better for errors: a smaller rmse wins, a larger one does not
    assert decide("1", 2.0, 1.0, metric="rmse").action == "promote"
    assert decide("1", 1.0, 2.0, metric="rmse").action == "keep"
