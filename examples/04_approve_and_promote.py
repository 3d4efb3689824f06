"""Governance: approve versions against gates, then promote the challenger if it wins.

    python examples/04_approve_and_promote.py --model-name iris-classifier \
        --champion 1 --challenger 2 --gates examples/gates.yaml --holdout holdout.csv

The same steps from a shell:
    mlops-platform registry approve iris-classifier 2 --gates examples/gates.yaml
    mlops-platform registry promote iris-classifier --dataset holdout.csv --metric accuracy
    mlops-platform registry history iris-classifier
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import require_server
from mlflow import MlflowClient

from mlops_platform.registry import AliasNotFoundError, Gates, Registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="iris-classifier")
    parser.add_argument("--champion", required=True, help="version that serves today")
    parser.add_argument("--challenger", required=True, help="version that wants its place")
    parser.add_argument("--gates", default=str(Path(__file__).with_name("gates.yaml")))
    parser.add_argument("--holdout", default="holdout.csv")
    parser.add_argument("--margin", type=float, default=0.01)
    args = parser.parse_args()
    uri = require_server()

    registry = Registry(uri, actor="examples/04")
    gates = Gates.load(Path(args.gates))
    for version in (args.champion, args.challenger):
        result = registry.approve(args.model_name, version, gates)
        for gate in result.gates:
            print(f"v{version} {'PASS' if gate.passed else 'FAIL'} {gate.gate}: {gate.detail}")

    try:
        registry.require_alias(args.model_name, "champion")
    except AliasNotFoundError:  # a brand-new model: the first champion needs --initial
        registry.promote(
            args.model_name, Path(args.holdout), metric="accuracy",
            challenger=args.champion, initial=True,
        )  # fmt: skip
    MlflowClient(uri).set_registered_model_alias(args.model_name, "challenger", args.challenger)
    outcome = registry.promote(
        args.model_name, Path(args.holdout), metric="accuracy", margin=args.margin
    )
    print(outcome.reason)
    history = [f"{e.event}:{e.data.get('after', e.data.get('version', ''))}"
               for e in registry.history(args.model_name)]  # fmt: skip
    print(json.dumps({**outcome.as_dict(), "history": history}))


if __name__ == "__main__":
    main()
