"""The models the registry tests log, and what they declare instead of letting MLflow infer it."""

from __future__ import annotations

from typing import Any


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


# The iris columns under plain names, and the quality gates the registry tests approve with.
FEATURES = ["f0", "f1", "f2", "f3"]
LENIENT = "metrics:\n  accuracy: '>= 0.3'\ntags: [team]\nsignature: true\nmax_size_mb: 50\n"
STRICT = "metrics:\n  accuracy: '>= 0.9'\ntags: [team]\nsignature: true\nmax_size_mb: 50\n"


def iris() -> tuple[Any, Any]:
    import pandas as pd
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return pd.DataFrame(x, columns=FEATURES), y


def log_version(model: Any, name: str, x: Any, y: Any, example_rows: int = 2) -> tuple[str, float]:
    """A run of the active experiment logging MODEL's accuracy on X, Y and MODEL itself
    (cloudpickle, declared requirements), registered as NAME: the new version, the accuracy."""
    import mlflow

    acc = float((model.predict(x) == y).mean())
    with mlflow.start_run():
        mlflow.log_metric("accuracy", acc)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=x.head(example_rows),
            serialization_format="cloudpickle",
            pip_requirements=sklearn_requirements(),
        )
    return str(info.registered_model_version), acc


def register_versions(tracking_uri: str, name: str) -> dict[str, float]:
    """Four versions of increasing skill: v1 majority-class, v2 a stump, v3 and v4 forests."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    mlflow.set_tracking_uri(tracking_uri)
    # An experiment of the model's own: a shared one belongs to whoever created it first,
    # and a user without rights on it (an editor after an admin's test) could not log.
    mlflow.set_experiment(f"registry-governance-{name}")
    x, y = iris()
    models = [
        DummyClassifier(strategy="most_frequent"),
        DecisionTreeClassifier(max_depth=1, random_state=0),
        RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0),
        RandomForestClassifier(n_estimators=15, max_depth=5, random_state=1),
    ]
    client = MlflowClient(tracking_uri)
    accuracy = {}
    for i, model in enumerate(models, start=1):
        version, acc = log_version(model.fit(x, y), name, x, y)
        assert version == str(i)
        client.set_model_version_tag(name, version, "team", "governance")
        accuracy[version] = acc
    return accuracy
