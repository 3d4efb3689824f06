"""`deploy render k8s | github-actions | serving`: deployment files from the settings."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mlops_platform.cli.common import JSON_OPTION, console, emit
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


# The options of `deploy render k8s` that take more than one line, named once here so that
# the command reads as a list of its options.
_BASE_OPTION = typer.Option(
    Path("deploy/kubernetes/base"),
    "--base",
    help="The kit's Kustomize base (a checkout's deploy/kubernetes/base); the overlay "
    "names it by its path relative to --out.",
)
_TRACKING_IMAGE_OPTION = typer.Option(
    k8s.K8sOptions.tracking_image, "--tracking-image", help="Image of the tracking server."
)
_SERVING_IMAGE_OPTION = typer.Option(
    k8s.K8sOptions.serving_image, "--serving-image", help="Image built from Dockerfile.serve."
)
_REPLICAS_OPTION = typer.Option(
    2, "--replicas", min=1, help="Tracking pods (a PodDisruptionBudget from 2 on)."
)
_CPU_OPTION = typer.Option(
    k8s.K8sOptions.tracking_cpu,
    "--tracking-cpu",
    help="CPU request of the tracking container; MLOPS_SERVER_WORKERS=0 means one "
    "worker per requested core (1-4).",
)
_MEMORY_OPTION = typer.Option(
    k8s.K8sOptions.tracking_memory, "--tracking-memory", help="Memory request of it."
)
_TMP_SIZE_OPTION = typer.Option(
    k8s.K8sOptions.tracking_tmp_size,
    "--tmp-size",
    help="Size limit of the tracking pod's /tmp (MLflow's own artifact views spool there).",
)
_TRACKING_HOST_OPTION = typer.Option(
    None, "--tracking-host", help="Public host of the tracking server (default: public_url)."
)
_INGRESS_CLASS_OPTION = typer.Option(
    None, "--ingress-class", help="IngressClass of the Ingress (default: the cluster's)."
)
_INGRESS_NAMESPACE_OPTION = typer.Option(
    None,
    "--ingress-namespace",
    help="Namespace whose pods may reach nginx (the Ingress controller's, the "
    "Gateway's); repeatable; default ingress-nginx.",
)
_INGRESS_CIDR_OPTION = typer.Option(
    None, "--ingress-cidr", help="Address block that may reach nginx; repeatable."
)
_GATEWAY_OPTION = typer.Option(
    None, "--gateway", help="NAMESPACE/NAME of a Gateway: adds a Gateway API HTTPRoute."
)
_SERVICE_MONITOR_OPTION = typer.Option(
    None,
    "--service-monitor/--no-service-monitor",
    help="A Prometheus Operator ServiceMonitor (default: with MLOPS_PROMETHEUS).",
)
_ANNOTATION_OPTION = typer.Option(
    None,
    "--service-account-annotation",
    help="KEY=VALUE on the ServiceAccounts that reach S3 (cloud identity), e.g. "
    "eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/mlflow; repeatable.",
)


def _parse_annotations(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """--service-account-annotation KEY=VALUE items as pairs; refuse one without `=`."""
    annotations = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--service-account-annotation {item!r} is not KEY=VALUE",
                fix="e.g. --service-account-annotation eks.amazonaws.com/role-arn=arn:...",
            )
        annotations.append((key, value))
    return tuple(annotations)


def _relative_base(base: Path, out: Path) -> str:
    """The Kustomize base as the overlay in ``out`` names it; refuse a folder without one."""
    if not (base / "kustomization.yaml").is_file():
        raise ConfigError(
            f"no Kustomize base at {base}",
            fix="pass --base with the path of the kit's deploy/kubernetes/base",
        )
    return Path(os.path.relpath(base.resolve(), out.resolve())).as_posix()


def _print_k8s_next(
    out: Path, files: dict[str, str], commands: list[str], namespace: str, job: str
) -> None:
    for name in files:
        console.print(f"wrote {out / name}", highlight=False)
    for line in commands:
        console.print(f"next: {line}", highlight=False)
    console.print(f"next: kubectl apply -k {out}", highlight=False)
    console.print(
        f"next: kubectl -n {namespace} wait --for=condition=complete job/{job} --timeout=2h",
        highlight=False,
    )


@render_app.command("k8s")
def render_k8s(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Folder of the overlay to write."),
    base: Path = _BASE_OPTION,
    namespace: str = typer.Option("mlops", "--namespace", help="Kubernetes namespace."),
    tracking_image: str = _TRACKING_IMAGE_OPTION,
    serving_image: str = _SERVING_IMAGE_OPTION,
    replicas: int = _REPLICAS_OPTION,
    cpu: str = _CPU_OPTION,
    memory: str = _MEMORY_OPTION,
    tmp_size: str = _TMP_SIZE_OPTION,
    tracking_host: str = _TRACKING_HOST_OPTION,
    ingress_class: str = _INGRESS_CLASS_OPTION,
    ingress_namespace: list[str] = _INGRESS_NAMESPACE_OPTION,
    ingress_cidr: list[str] = _INGRESS_CIDR_OPTION,
    gateway: str = _GATEWAY_OPTION,
    service_monitor: bool = _SERVICE_MONITOR_OPTION,
    annotation: list[str] = _ANNOTATION_OPTION,
    model: str = typer.Option("model", "--model", help="Registered model to serve."),
    alias: str = typer.Option("champion", "--alias", help="Alias to serve."),
    max_replicas: int = typer.Option(10, "--max-replicas", min=1, help="Serving HPA ceiling."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a Kustomize overlay of values (settings, images, patches) on the kit's base.

    No secret value is written: the pods mount the Secrets the output names. Settings
    that only work on one host (a loopback database, the local SeaweedFS, localhost as
    the public host) are refused with the variable to set.

    Example: mlops-platform deploy render k8s --out deploy/kubernetes/overlays/mine
    """
    annotations = _parse_annotations(annotation)
    opts = k8s.K8sOptions(
        namespace=namespace,
        base=_relative_base(base, out),
        tracking_image=tracking_image,
        serving_image=serving_image,
        tracking_replicas=replicas,
        tracking_cpu=cpu,
        tracking_memory=memory,
        tracking_tmp_size=tmp_size,
        tracking_host=tracking_host,
        ingress_class=ingress_class,
        ingress_namespaces=tuple(ingress_namespace or k8s.K8sOptions.ingress_namespaces),
        ingress_cidrs=tuple(ingress_cidr or ()),
        gateway=gateway,
        service_monitor=service_monitor,
        service_account_annotations=annotations,
        model_name=model,
        model_alias=alias,
        serving_max_replicas=max_replicas,
    )
    settings = ctx.obj.settings(check=False)
    files = k8s.render(settings, opts)
    for name, text in files.items():
        _write(out / name, text)
    job = k8s.migrate_job(settings, opts)
    commands = k8s.secret_commands(settings, opts)
    if as_json:
        emit({"out": str(out), "files": sorted(files), "migrate_job": job, "secrets": commands})
        return
    _print_k8s_next(out, files, commands, namespace, job)


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
