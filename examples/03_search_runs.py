"""Search and compare runs: filter, order by a metric, show params side by side.

python examples/03_search_runs.py --experiment examples-iris --metric accuracy
"""

from __future__ import annotations

import argparse
import json

import mlflow
from _common import require_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="examples-iris")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    require_server()

    experiment = mlflow.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no experiment {args.experiment!r}; run 01_sklearn_baseline.py")
    runs = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"metrics.{args.metric} > 0 and attributes.status = 'FINISHED'",
        order_by=[f"metrics.{args.metric} DESC", "attributes.start_time DESC"],
        max_results=args.top,
    )
    columns = ["run_id", "tags.mlflow.runName", f"metrics.{args.metric}"]
    params = sorted(c for c in runs.columns if c.startswith("params."))
    table = runs[columns + params].fillna("")
    print(table.to_string(index=False))
    best = runs.iloc[0]
    print(
        json.dumps(
            {
                "runs": len(runs),
                "best_run_id": best["run_id"],
                "best_run_name": best["tags.mlflow.runName"],
                "best": float(best[f"metrics.{args.metric}"]),
                "ordered": [float(v) for v in runs[f"metrics.{args.metric}"]],
            }
        )
    )


if __name__ == "__main__":
    main()
