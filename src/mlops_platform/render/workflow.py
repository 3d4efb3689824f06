"""The GitHub Actions workflow that takes a model version from the registry to production.

``validate`` checks the version against the gates (``registry approve``: records the
outcome, moves ``@staging``); ``deploy-staging`` rolls the staging serving Deployment onto
``@staging`` and smoke-tests it; ``deploy-production`` waits for the protected
``production`` environment (required reviewers are set in the repository's settings),
moves ``@champion`` with ``registry promote`` (approved, better by the margin,
conflict-safe) and rolls production serving onto it.

Inputs reach shell steps through ``env:`` only, never as ``${{ }}`` inside a script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from mlops_platform import __version__


@dataclass(frozen=True)
class WorkflowOptions:
    name: str = "Model promotion"
    package: str = f"mlops-platform=={__version__}"
    python: str = "3.11"
    gates: str = "gates.yaml"
    dataset: str = "data/holdout.csv"
    metric: str = "accuracy"
    target: str = "target"
    margin: float = 0.0
    staging_namespace: str = "mlops-staging"
    production_namespace: str = "mlops"
    staging_url: str = "https://models.staging.example.com"
    production_url: str = "https://models.example.com"
    runner: str = "ubuntu-24.04"


class _Literal(str):
    """A string dumped as a YAML block scalar (``|``)."""


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _script(*lines: str) -> _Literal:
    return _Literal("\n".join(lines) + "\n")


def _setup(opts: WorkflowOptions) -> list[dict[str, Any]]:
    return [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5", "with": {"python-version": opts.python}},
        {"name": "Install mlops-platform", "run": f'pip install "{opts.package}"'},
    ]


def _kubeconfig(secret: str) -> dict[str, Any]:
    return {
        "name": "Write the kubeconfig",
        "env": {"KUBECONFIG_DATA": f"${{{{ secrets.{secret} }}}}"},
        "run": _script(
            'install -m 600 /dev/null "$RUNNER_TEMP/kubeconfig"',
            'printf %s "$KUBECONFIG_DATA" | base64 -d > "$RUNNER_TEMP/kubeconfig"',
            'echo "KUBECONFIG=$RUNNER_TEMP/kubeconfig" >> "$GITHUB_ENV"',
        ),
    }


def _rollout(namespace: str, alias: str, url: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"Serve @{alias}",
            "env": {"NAMESPACE": namespace, "ALIAS": alias},
            "run": _script(
                'kubectl --namespace "$NAMESPACE" set env deployment/model-serving \\',
                '  MODEL_NAME="$MODEL" MODEL_ALIAS="$ALIAS" \\',
                '  MODEL_URI="models:/$MODEL@$ALIAS" DEPLOYED_VERSION="$VERSION"',
                'kubectl --namespace "$NAMESPACE" rollout restart deployment/model-serving',
                'kubectl --namespace "$NAMESPACE" rollout status deployment/model-serving '
                "--timeout=10m",
            ),
        },
        {
            "name": "Smoke test",
            "env": {"URL": url},
            "run": _script('curl --fail --silent --show-error --retry 5 "$URL/health"'),
        },
    ]


def workflow(opts: WorkflowOptions | None = None) -> dict[str, Any]:
    opts = opts or WorkflowOptions()
    inputs = {
        "model": {"description": "Registered model name", "required": True, "type": "string"},
        "version": {"description": "Model version to ship", "required": True, "type": "string"},
    }
    env = {
        "MODEL": "${{ inputs.model }}",
        "VERSION": "${{ inputs.version }}",
        "MLFLOW_TRACKING_URI": "${{ vars.MLFLOW_TRACKING_URI }}",
        "MLFLOW_TRACKING_USERNAME": "${{ vars.MLFLOW_TRACKING_USERNAME }}",
        "MLFLOW_TRACKING_PASSWORD": "${{ secrets.MLFLOW_TRACKING_PASSWORD }}",
    }
    return {
        "name": opts.name,
        "on": {"workflow_dispatch": {"inputs": inputs}},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "promote-${{ inputs.model }}", "cancel-in-progress": False},
        "env": env,
        "jobs": {
            "validate": _validate_job(opts),
            "deploy-staging": _staging_job(opts),
            "deploy-production": _production_job(opts),
        },
    }


def _validate_job(opts: WorkflowOptions) -> dict[str, Any]:
    """Check the version against the gates; the approval is kept as an artifact."""
    return {
        "name": "Check the version against the gates",
        "runs-on": opts.runner,
        "timeout-minutes": 20,
        "steps": [
            *_setup(opts),
            {
                "name": "registry approve",
                "env": {"GATES": opts.gates},
                "run": _script(
                    'mlops-platform registry approve "$MODEL" "$VERSION" --gates "$GATES" '
                    '--actor "github:$GITHUB_ACTOR run $GITHUB_RUN_ID" --json | tee approval.json'
                ),
            },
            {
                "if": "always()",
                "uses": "actions/upload-artifact@v4",
                "with": {"name": "approval", "path": "approval.json"},
            },
        ],
    }


def _staging_job(opts: WorkflowOptions) -> dict[str, Any]:
    return {
        "name": "Deploy @staging",
        "needs": "validate",
        "runs-on": opts.runner,
        "timeout-minutes": 30,
        "environment": {"name": "staging", "url": opts.staging_url},
        "steps": [
            {"uses": "actions/checkout@v4"},
            _kubeconfig("STAGING_KUBECONFIG"),
            *_rollout(opts.staging_namespace, "staging", opts.staging_url),
        ],
    }


def _production_job(opts: WorkflowOptions) -> dict[str, Any]:
    """Promote to @champion (conflict-safe, approved versions only), then roll it out."""
    promote_args = (
        'mlops-platform registry promote "$MODEL" --challenger "$VERSION" '
        '--dataset "$DATASET" --metric "$METRIC" --target "$TARGET" --margin "$MARGIN" '
        '--actor "github:$GITHUB_ACTOR run $GITHUB_RUN_ID" --json | tee promotion.json'
    )
    return {
        "name": "Promote to @champion and deploy",
        "needs": "deploy-staging",
        "runs-on": opts.runner,
        "timeout-minutes": 30,
        "environment": {"name": "production", "url": opts.production_url},
        "steps": [
            *_setup(opts),
            {
                "name": "registry promote (conflict-safe; refuses unapproved versions)",
                "env": {
                    "DATASET": opts.dataset,
                    "METRIC": opts.metric,
                    "TARGET": opts.target,
                    "MARGIN": str(opts.margin),
                },
                "run": _script(promote_args),
            },
            _kubeconfig("PRODUCTION_KUBECONFIG"),
            *_rollout(opts.production_namespace, "champion", opts.production_url),
            {
                "if": "always()",
                "uses": "actions/upload-artifact@v4",
                "with": {"name": "promotion", "path": "promotion.json"},
            },
        ],
    }


def render(opts: WorkflowOptions | None = None) -> str:
    header = (
        "# Rendered by `mlops-platform deploy render github-actions`.\n"
        "# Set repository variables MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME; secrets\n"
        "# MLFLOW_TRACKING_PASSWORD, STAGING_KUBECONFIG, PRODUCTION_KUBECONFIG (base64); and\n"
        "# protect the `production` environment with required reviewers.\n"
    )
    body = yaml.dump(workflow(opts), Dumper=_Dumper, sort_keys=False, width=200)
    return header + body.replace("'on':", "on:", 1)
