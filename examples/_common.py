"""Shared by the examples: the dataset, and a check that the client points at a server."""

from __future__ import annotations

import os
import sys

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def require_server() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        sys.exit('error: MLFLOW_TRACKING_URI is not set; run eval "$(mlops-platform client-env)"')
    return uri


def iris_split(seed: int = 42):  # type: ignore[no-untyped-def]
    """Iris as DataFrames with plain column names (they become the model's signature)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = FEATURES
    return train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
