"""`deploy render k8s | github-actions | serving`: deployment files from the settings."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops_platform.cli.common import JSON_OPTION, console, print_json
from mlops_platform.errors import ConfigError
from mlops_platform.render import k8s, serving, workflow

deploy_app = typer.Typer(
    help="Render Kubernetes manifests, the CI/CD workflow and the serving image.",
    no_args_is_help=True,
)
render_app = typer.Typer(help="Write deployment files from the settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    deploy_app.add_typer(render_app, name="render")
    app.add_typer(deploy_app, name="deploy")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}", fix="pass a writable --out"
        ) from None


@render_app.command("k8s")
def render_k8s(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Folder to write the manifests into."),
    namespace: str = typer.Option("mlops", "--namespace", help="Kubernetes namespace."),
    tracking_image: str = typer.Option(
        k8s.K8sOptions.tracking_image, "--tracking-image", help="Image of the tracking server."
    ),
    serving_image: str = typer.Option(
        k8s.K8sOptions.serving_image, "--serving-image", help="Image built from Dockerfile.serve."
    ),
    replicas: int = typer.Option(2, "--replicas", min=1, help="Tracking server replicas."),
    tracking_host: str = typer.Option(
        None, "--tracking-host", help="Public host of the tracking server (default: public_url)."
    ),
    model: str = typer.Option("model", "--model", help="Registered model to serve."),
    alias: str = typer.Option("champion", "--alias", help="Alias to serve."),
    serving_host: str = typer.Option(
        "models.example.com", "--serving-host", help="Public host of model serving."
    ),
    max_replicas: int = typer.Option(10, "--max-replicas", min=1, help="HPA ceiling."),
    ingress_class: str = typer.Option(
        None, "--ingress-class", help="IngressClass of the Ingresses (default: the cluster's)."
    ),
    ingress_namespace: str = typer.Option(
        k8s.K8sOptions.ingress_namespace,
        "--ingress-namespace",
        help="Namespace of the Ingress controller's pods (the NetworkPolicy lets them in).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write tracking and serving manifests (no secret values: they reference Secrets).

    Example: mlops-platform deploy render k8s --out deploy/k8s --model iris-classifier
    """
    opts = k8s.K8sOptions(
        namespace=namespace,
        tracking_image=tracking_image,
        serving_image=serving_image,
        tracking_replicas=replicas,
        tracking_host=tracking_host,
        model_name=model,
        model_alias=alias,
        serving_host=serving_host,
        serving_max_replicas=max(max_replicas, 2),
        ingress_class=ingress_class,
        ingress_namespace=ingress_namespace,
    )
    files = k8s.render(ctx.obj.settings(check=False), opts)
    for name, text in files.items():
        _write(out / name, text)
    if as_json:
        print_json({"out": str(out), "files": sorted(files)})
        return
    for name in files:
        console.print(f"wrote {out / name}", highlight=False)
    for line in k8s.secret_commands(opts):
        console.print(f"next: {line}", highlight=False)


@render_app.command("github-actions")
def render_github_actions(
    out: Path = typer.Option(
        None, "--out", help="File to write (default: print), e.g. .github/workflows/promote.yml."
    ),
    gates: str = typer.Option("gates.yaml", "--gates", help="Gates file in the repository."),
    dataset: str = typer.Option(
        "data/holdout.csv", "--dataset", help="Evaluation data in the repository."
    ),
    metric: str = typer.Option("accuracy", "--metric", help="Metric that decides promotion."),
    margin: float = typer.Option(0.0, "--margin", help="How much better the challenger must be."),
    package: str = typer.Option(
        workflow.WorkflowOptions.package, "--package", help="pip requirement of the kit."
    ),
) -> None:
    """Write the promotion workflow: gates, staging, protected production, champion.

    Example: mlops-platform deploy render github-actions --out .github/workflows/promote.yml
    """
    text = workflow.render(
        workflow.WorkflowOptions(
            gates=gates, dataset=dataset, metric=metric, margin=margin, package=package
        )
    )
    if out is None:
        typer.echo(text, nl=False)
        return
    _write(out, text)
    console.print(f"wrote {out}", highlight=False)


@render_app.command("serving")
def render_serving(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Dockerfile to write (default: print)."),
    compose: bool = typer.Option(
        False, "--compose", help="Print the compose `serving` service instead."
    ),
    extra_packages: str = typer.Option(
        "scikit-learn", "--extra-packages", help="The model's libraries to install."
    ),
) -> None:
    """Write the model-serving Dockerfile (health: GET /ping) or its compose service.

    Example: mlops-platform deploy render serving --out mlflow/Dockerfile.serve
    """
    if compose:
        text = serving.compose_service(ctx.obj.settings(check=False))
    else:
        text = serving.dockerfile(extra_packages=extra_packages)
    if out is None:
        typer.echo(text, nl=False)
        return
    _write(out, text)
    console.print(f"wrote {out}", highlight=False)
