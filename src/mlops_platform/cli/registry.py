"""`registry approve`, `registry promote`, `registry history`.

These commands are clients of the tracking server, like any training script: they talk
to MLFLOW_TRACKING_URI with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (run
`eval "$(mlops-platform client-env)"` first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlops_platform import registry as reg
from mlops_platform.cli.common import JSON_OPTION, console, print_json, table
from mlops_platform.errors import ConfigError

registry_app = typer.Typer(
    help="Quality gates, approval, champion/challenger promotion, audit trail.",
    no_args_is_help=True,
)

TRACKING_URI_OPTION = typer.Option(
    None,
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="Tracking server URL (default: MLFLOW_TRACKING_URI).",
)
ACTOR_OPTION = typer.Option(
    None, "--actor", help="Who is acting, recorded in the audit trail (default: user@host)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")


def _registry(tracking_uri: str | None, actor: str | None) -> reg.Registry:
    if not tracking_uri:
        raise ConfigError(
            "MLFLOW_TRACKING_URI is not set",
            fix='run eval "$(mlops-platform client-env)" or pass --tracking-uri',
        )
    return reg.Registry(tracking_uri, actor=actor)


@registry_app.command("approve")
def approve(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Model version to check."),
    gates: Path = typer.Option(..., "--gates", help="YAML file of quality gates."),
    tracking_uri: str = TRACKING_URI_OPTION,
    actor: str = ACTOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a version against the gates, record the outcome, stage it on success.

    Exit code 0 when approved, 1 when a gate failed (the table says which and by how much).

    Example: mlops-platform registry approve iris-classifier 3 --gates gates.yaml
    """
    spec = reg.Gates.load(gates)
    result = _registry(tracking_uri, actor).approve(name, version, spec)
    if as_json:
        print_json(result.as_dict())
    else:
        rows = [["PASS" if g.passed else "FAIL", g.gate, g.detail] for g in result.gates]
        console.print(table(f"{name} v{version}", ["result", "gate", "detail"], rows))
        if result.approved:
            if not result.staging_moved:
                moved = f"@staging already at v{version}"
            elif result.staging_before is None:
                moved = f"@staging set to v{version}"
            else:
                moved = f"@staging moved v{result.staging_before} -> v{version}"
            console.print(f"approved by {result.actor}; {moved}", highlight=False)
        else:
            failed = ", ".join(g.gate for g in result.failed())
            console.print(f"rejected: {failed} failed; no alias moved", highlight=False)
    if not result.approved:
        raise typer.Exit(1)


@registry_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    dataset: Path = typer.Option(..., "--dataset", help="Evaluation data (CSV or Parquet)."),
    metric: str = typer.Option(
        ..., "--metric", help="accuracy, r2 (higher is better) or rmse, mae, mse (lower)."
    ),
    target: str = typer.Option("target", "--target", help="Label column of the dataset."),
    margin: float = typer.Option(
        0.0, "--margin", help="How much better the challenger must score."
    ),
    challenger: str = typer.Option(
        None, "--challenger", help="Version to promote (default: the @challenger alias)."
    ),
    initial: bool = typer.Option(
        False, "--initial", help="Allow a first champion when the model has none."
    ),
    tracking_uri: str = TRACKING_URI_OPTION,
    actor: str = ACTOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Score @champion and the challenger; move @champion when the approved challenger wins.

    Exit code 0 when promoted, 1 when the champion was kept, 3 on a lost race.

    Example: mlops-platform registry promote iris-classifier --dataset holdout.csv --metric accuracy
    """
    result = _registry(tracking_uri, actor).promote(
        name,
        dataset,
        metric=metric,
        target=target,
        margin=margin,
        challenger=challenger,
        initial=initial,
    )
    if as_json:
        print_json(result.as_dict())
    else:
        rows: list[list[Any]] = [
            ["champion", result.champion or "-", result.champion_score],
            ["challenger", result.challenger, result.challenger_score],
        ]
        console.print(table(f"{name}: {result.metric}", ["role", "version", "score"], rows))
        verdict = "promoted" if result.promoted else "kept the champion"
        console.print(f"{verdict}: {result.reason}", highlight=False)
    if not result.promoted:
        raise typer.Exit(1)


@registry_app.command("history")
def history(
    name: str = typer.Argument(..., help="Registered model name."),
    tracking_uri: str = TRACKING_URI_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the audit trail: approvals, rejections, alias moves, kept champions, conflicts.

    Example: mlops-platform registry history iris-classifier --json
    """
    events = _registry(tracking_uri, None).history(name)
    if as_json:
        print_json([e.as_dict() for e in events])
        return
    rows = [
        [e.at, e.event, e.actor, ", ".join(f"{k}={v}" for k, v in e.data.items() if k != "token")]
        for e in events
    ]
    console.print(table(f"{name}: audit trail", ["at", "event", "actor", "detail"], rows))
