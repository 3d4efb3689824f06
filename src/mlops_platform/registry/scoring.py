"""Scoring a model on a labelled dataset: reading it, shaping it for the model, the metric."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_platform.registry.errors import DatasetError

if TYPE_CHECKING:
    import pandas as pd

HIGHER_IS_BETTER = {"accuracy": True, "r2": True, "rmse": False, "mae": False, "mse": False}


def score(metric: str, y_true: Any, y_pred: Any) -> float:
    """A model's score on labelled data; ``HIGHER_IS_BETTER`` says which way is better."""
    import numpy as np

    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if pred.ndim > 1 and pred.shape[-1] == 1:
        pred = pred.reshape(-1)
    if metric == "accuracy":
        return float(np.mean(truth == pred))
    truth = truth.astype(float)
    pred = pred.astype(float)
    err = pred - truth
    if metric == "mse":
        return float(np.mean(err**2))
    if metric == "rmse":
        return float(np.sqrt(np.mean(err**2)))
    if metric == "mae":
        return float(np.mean(np.abs(err)))
    if metric == "r2":
        total = float(np.sum((truth - truth.mean()) ** 2))
        return 1.0 - float(np.sum(err**2)) / total if total else 0.0
    raise DatasetError(
        f"unknown metric {metric!r} (use one of {', '.join(HIGHER_IS_BETTER)})",
        fix="pass --metric with one of those",
    )


def read_dataset(path: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist", fix="pass a CSV or Parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise DatasetError(
            f"cannot read dataset {path}: {exc.__class__.__name__}: {str(exc)[:200]}",
            fix="pass a CSV with a header row, or a Parquet file",
        ) from None


def features_for(signature: Any, data: pd.DataFrame, *, where: str) -> Any:
    """The model's input from ``data``: columns checked against the signature, in its order."""
    if signature is None or signature.inputs is None:
        return data
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        spec = inputs.inputs[0]
        width = spec.shape[-1] if spec.shape else None
        if width not in (None, -1) and data.shape[1] != width:
            raise DatasetError(
                f"dataset has {data.shape[1]} feature columns but {where} expects {width}",
                fix="pass a dataset with the model's features and the --target column",
            )
        return data.to_numpy(dtype=spec.type)
    names = inputs.input_names()
    required = {s.name for s in inputs.inputs if not getattr(s, "optional", False)}
    missing = [n for n in names if n in required and n not in data.columns]
    extra = [c for c in data.columns if c not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(str, missing))}")
        if extra:
            parts.append(f"unexpected {', '.join(map(str, extra))}")
        raise DatasetError(
            f"dataset columns do not match the signature of {where}: {'; '.join(parts)}",
            fix=f"the signature wants: {', '.join(map(str, names))} (plus the --target column)",
        )
    return data[[n for n in names if n in data.columns]]
