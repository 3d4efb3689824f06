"""Autologging: a grid search whose params, metrics and best model MLflow records itself.

python examples/02_autolog.py --model-name iris-classifier
"""

from __future__ import annotations

import argparse
import json

import mlflow
from _common import iris_split, require_server
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="iris-classifier")
    parser.add_argument("--experiment", default="examples-iris")
    parser.add_argument("--team", default="data-science")
    args = parser.parse_args()
    require_server()

    mlflow.set_experiment(args.experiment)
    # autolog's sklearn default is still cloudpickle; registering needs a name
    mlflow.sklearn.autolog(
        log_input_examples=True, max_tuning_runs=3, registered_model_name=args.model_name
    )
    x_train, x_test, y_train, y_test = iris_split()
    search = GridSearchCV(
        RandomForestClassifier(random_state=0),
        {"n_estimators": [10, 30], "max_depth": [2, 4]},
        cv=3,
    )
    with mlflow.start_run(run_name="rf-grid-autolog") as run:
        search.fit(x_train, y_train)
        # the same metric name as the baseline, so gates and comparisons line up
        mlflow.log_metric("accuracy", accuracy_score(y_test, search.predict(x_test)))
    mlflow.sklearn.autolog(disable=True)

    client = MlflowClient()
    versions = client.search_model_versions(
        f"name='{args.model_name}' and run_id='{run.info.run_id}'"
    )
    version = str(max(int(v.version) for v in versions))
    client.set_model_version_tag(args.model_name, version, "team", args.team)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    print(
        json.dumps(
            {
                "run_id": run.info.run_id,
                "version": version,
                "best_params": search.best_params_,
                "child_runs": len(children),
                "logged_params": sorted(client.get_run(run.info.run_id).data.params),
            }
        )
    )


if __name__ == "__main__":
    main()
