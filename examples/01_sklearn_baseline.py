"""A baseline model: train, log params and metrics, register it with a signature.

    eval "$(mlops-platform client-env)"
    python examples/01_sklearn_baseline.py --model-name iris-classifier --holdout holdout.csv

Writes the held-out split (features + `target`) for the promotion example.
"""

from __future__ import annotations

import argparse
import json

import mlflow
from _common import iris_split, require_server
from mlflow import MlflowClient
from sklearn.metrics import accuracy_score, f1_score
from sklearn.tree import DecisionTreeClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="iris-classifier")
    parser.add_argument("--experiment", default="examples-iris")
    parser.add_argument("--holdout", default="holdout.csv", help="where to write the test split")
    parser.add_argument("--team", default="data-science")
    args = parser.parse_args()
    require_server()

    mlflow.set_experiment(args.experiment)
    x_train, x_test, y_train, y_test = iris_split()
    params = {"max_depth": 1, "random_state": 0}  # deliberately simple: the one to beat
    model = DecisionTreeClassifier(**params).fit(x_train, y_train)
    predicted = model.predict(x_test)

    with mlflow.start_run(run_name="baseline-stump") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(
            {
                "accuracy": accuracy_score(y_test, predicted),
                "f1_macro": f1_score(y_test, predicted, average="macro"),
            }
        )
        mlflow.set_tag("stage", "baseline")
        # MLflow 3 defaults sklearn models to skops, which refuses types it does not
        # trust; cloudpickle is the classic format (load only models you trust).
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=x_train.head(3),
            registered_model_name=args.model_name,
            serialization_format="cloudpickle",
        )
    version = str(info.registered_model_version)
    MlflowClient().set_model_version_tag(args.model_name, version, "team", args.team)
    x_test.assign(target=y_test).to_csv(args.holdout, index=False)
    print(json.dumps({"run_id": run.info.run_id, "model": args.model_name, "version": version}))


if __name__ == "__main__":
    main()
