"""`registry approve`, `promote`, `verify`, `serve`, `history`.

These commands are clients of the tracking server, like any training script: they talk
to MLFLOW_TRACKING_URI with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (run
`eval "$(mlops-platform client-env)"` first).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from mlops_platform import registry as reg
from mlops_platform import serving as serving_ops
from mlops_platform.cli.common import JSON_OPTION, console, emit, progress, table
from mlops_platform.errors import ConfigError
from mlops_platform.render.serving import DEFAULT_PORT

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
MODEL_ARGUMENT = typer.Argument(..., help="Registered model name.")


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
    name: str = MODEL_ARGUMENT,
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
    code = 0 if result.approved else 1
    if as_json:
        emit(result.as_dict(), exit_code=code)
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
            console.print(
                f"artifacts pinned: {result.artifacts_digest} "
                f"({result.artifacts_files} files, {result.artifacts_bytes} bytes)",
                highlight=False,
                soft_wrap=True,
            )
        else:
            failed = ", ".join(g.gate for g in result.failed())
            console.print(f"rejected: {failed} failed; no alias moved", highlight=False)
    raise typer.Exit(code)


@registry_app.command("promote")
def promote(
    name: str = MODEL_ARGUMENT,
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
    code = 0 if result.promoted else 1
    if as_json:
        emit(result.as_dict(), exit_code=code)
    else:
        rows: list[list[Any]] = [
            ["champion", result.champion or "-", result.champion_score],
            ["challenger", result.challenger, result.challenger_score],
        ]
        console.print(table(f"{name}: {result.metric}", ["role", "version", "score"], rows))
        verdict = "promoted" if result.promoted else "kept the champion"
        console.print(f"{verdict}: {result.reason}", highlight=False)
    raise typer.Exit(code)


@registry_app.command("verify")
def verify(
    name: str = MODEL_ARGUMENT,
    version: str = typer.Argument(..., help="Model version, or @ALIAS for the one it names."),
    tracking_uri: str = TRACKING_URI_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check that an approved version's artifacts are still the ones its approval pinned.

    Downloads every file through the tracking server and compares its digest with the
    `mlops.artifacts_digest` tag. Exit code 0 when they match, 2 when the version is not
    approved, was approved before pinning, or its files changed (the error names them).

    Example: mlops-platform registry verify iris-classifier @champion
    """
    registry = _registry(tracking_uri, None)
    number = registry.require_alias(name, version[1:]) if version.startswith("@") else version
    registry.model_version(name, number)
    result = registry.verify_artifacts(name, number)
    report = {
        "name": name,
        "version": number,
        "artifacts_digest": result.digest,
        "files": len(result.files),
        "size_bytes": result.size_bytes,
    }
    if as_json:
        emit(report)
    else:
        console.print(
            f"{name} v{number}: artifacts match the approval ({result.digest}, {result.summary()})",
            highlight=False,
            soft_wrap=True,
        )


@registry_app.command("serve")
def serve_model(
    name: str = typer.Argument(..., help="Registered model name.", envvar="MODEL_NAME"),
    alias: str = typer.Option(
        "champion", "--alias", envvar="MODEL_ALIAS", help="Alias of the version to serve."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", envvar="PORT", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", envvar="WORKERS", help="Server processes."),
    model_dir: Path = typer.Option(
        None,
        "--model-dir",
        help="Where to keep the verified copy the server loads (default: a new temp folder).",
    ),
    tracking_uri: str = TRACKING_URI_OPTION,
) -> None:
    """Serve an approved version with MLflow's scoring server, after checking its files.

    Resolves the alias, downloads the version, checks the copy against the digest its
    approval pinned, then execs `mlflow models serve` on that very copy. A version that is
    not approved, was approved before pinning, or whose files changed since is refused
    before anything listens (exit 2, one line naming the version and the fix).

    Example: mlops-platform registry serve iris-classifier --alias champion --port 8080
    """
    registry = _registry(tracking_uri, None)
    dst = model_dir or Path(tempfile.mkdtemp(prefix="mlops-serving-"))
    copy, argv = serving_ops.prepare(
        registry, name, alias, dst, host=host, port=port, workers=workers
    )
    progress(
        f"serving {name} v{copy.version} (@{alias}): {copy.artifacts.summary()}, "
        f"{copy.artifacts.digest} matches its approval"
    )
    serving_ops.exec_server(argv)


@registry_app.command("history")
def history(
    name: str = MODEL_ARGUMENT,
    tracking_uri: str = TRACKING_URI_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the audit trail: approvals, rejections, alias moves, kept champions, conflicts.

    Example: mlops-platform registry history iris-classifier --json
    """
    events = _registry(tracking_uri, None).history(name)
    if as_json:
        emit({"name": name, "events": [e.as_dict() for e in events]})
        return
    rows = [
        [e.at, e.event, e.actor, ", ".join(f"{k}={v}" for k, v in e.data.items() if k != "token")]
        for e in events
    ]
    console.print(table(f"{name}: audit trail", ["at", "event", "actor", "detail"], rows))
