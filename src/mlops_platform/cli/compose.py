"""`compose status`: the docker compose deployment's containers and their health."""

from __future__ import annotations

import typer

from mlops_platform import containers
from mlops_platform.cli.common import JSON_OPTION, console, emit, table

compose_app = typer.Typer(
    help="The docker compose deployment, read from the Docker engine.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(compose_app, name="compose")


@compose_app.command("status")
def status(
    project: str = typer.Option(
        containers.COMPOSE_PROJECT, "--project", help="Compose project name (`name:` in the file)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show each container's state and healthcheck; exit 1 if one is not healthy.

    A one-shot service (the bucket init) counts when it exited 0.

    Example: mlops-platform compose status --json
    """
    rows = containers.compose_health(project)
    code = 0 if all(r.healthy for r in rows) else 1
    if as_json:
        emit({"project": project, "services": [r.as_dict() for r in rows]}, exit_code=code)
    else:
        console.print(
            table(
                f"compose project {project}",
                ["service", "container", "status"],
                [[r.service, r.name, r.status] for r in rows],
            )
        )
    raise typer.Exit(code)
