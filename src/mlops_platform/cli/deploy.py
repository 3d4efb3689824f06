"""`deploy render k8s|github-actions|serving`: write deployment files from the settings."""

from __future__ import annotations

import typer

deploy_app = typer.Typer(
    help="Render Kubernetes manifests, CI workflows, serving images.", no_args_is_help=True
)
render_app = typer.Typer(help="Write deployment files from the settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    deploy_app.add_typer(render_app, name="render")
    app.add_typer(deploy_app, name="deploy")
