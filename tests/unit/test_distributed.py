"""Rank detection and rank-0-only logging, without a server."""

from __future__ import annotations

import sys

import pytest

from mlops_platform.distributed import RankError, RankInfo, RankZeroLogger, rank_zero_only


def test_rank_from_launcher_variables() -> None:
    assert RankInfo.from_env({}) == RankInfo(0, 0, 1)
    info = RankInfo.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert info == RankInfo(3, 1, 4) and not info.is_main
    assert RankInfo.from_env({"RANK": "0", "WORLD_SIZE": "8"}).is_main


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "one"}, "RANK='one' is not an integer"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "inconsistent ranks"),
        ({"WORLD_SIZE": "0"}, "inconsistent ranks"),
        ({"RANK": "1", "LOCAL_RANK": "2", "WORLD_SIZE": "4"}, "inconsistent ranks"),
    ],
)
def test_bad_rank_variables(env: dict[str, str], message: str) -> None:
    with pytest.raises(RankError, match=message):
        RankInfo.from_env(env)


def test_other_ranks_never_import_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any `import mlflow` would now fail
    log = RankZeroLogger(RankInfo(2, 0, 4))
    with log.start_run(run_name="x") as run:
        assert run is None
        assert log.log_params({"a": 1}) is None
        assert log.log_metric("loss", 0.1, step=1) is None
        assert log.set_tags({"t": "v"}) is None
        assert log.sklearn.log_model(object(), name="model") is None
        assert log.pytorch.log_model(object(), name="model") is None
    assert rank_zero_only(lambda: 42, rank=RankInfo(1, 1, 2))() is None
    assert rank_zero_only(lambda: 42, rank=RankInfo(0, 0, 2))() == 42


def test_rank_zero_is_mlflow_itself() -> None:
    import mlflow

    log = RankZeroLogger(RankInfo(0, 0, 2))
    assert log.log_metrics is mlflow.log_metrics
    assert log.sklearn is mlflow.sklearn
