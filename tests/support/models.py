"""What the tests' logged models declare instead of letting MLflow infer it."""

from __future__ import annotations


def sklearn_requirements() -> list[str]:
    """The pip requirements of a scikit-learn model saved with cloudpickle, pinned to what
    this environment runs. Given to `log_model`, they replace MLflow's inference, which
    loads every model in a subprocess of its own to see what it imports (measured at 50 to
    100 s a model on a loaded 2-core machine, 1 s declared)."""
    import cloudpickle
    import mlflow
    import sklearn

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]
