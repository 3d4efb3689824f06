"""`rotate`: new secrets and passwords, in .env and in the running local stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

from mlops_platform import rotate as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, progress, table
from mlops_platform.errors import MissingBinaryError, ServiceError


def register(app: typer.Typer) -> None:
    app.command("rotate")(rotate)


def rotate(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, help=f"What to rotate: {', '.join(ops.SECRETS)}, or all.", show_default=False
    ),
    compose: bool = typer.Option(
        False,
        "--compose",
        help="The docker compose deployment of this .env (run beside docker-compose.yaml).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Give secrets new values everywhere they are used, then restart what reads them.

    db-password: ALTER ROLE in the running PostgreSQL; s3-keys: SeaweedFS's identity;
    proxy-password: the password file nginx reads; proxy-secret and flask-secret-key: the
    tracking server and nginx, restarted. Values are never printed. Safe to run again: a
    run that failed half-way is repaired by the next one. docker compose: docs/compose.md.

    Example: mlops-platform rotate db-password proxy-secret --json
    (docker compose: mlops-platform rotate all --compose)
    """
    obj: Context = ctx.obj
    chosen = ops.check_names(names or [])
    if compose:
        result = ops.rotate_compose(
            obj.env_file, chosen, compose=_docker_compose(obj.env_file), progress=progress
        )
    else:
        settings = obj.settings(check=False)
        result = ops.rotate_local(settings, obj.env_file, chosen, progress=progress)
    if as_json:
        emit(result.as_dict())
        return
    console.print(
        table(
            f"rotated in {result.env_file}",
            ["variable", "applied to"],
            [[v, ", ".join(result.applied) or "-"] for v in result.rotated],
        )
    )
    if result.restarted:
        console.print(f"restarted: {', '.join(result.restarted)}")


def _docker_compose(env_file: Path) -> ops.ComposeRunner:
    """Runs `docker compose --env-file ENV ARGS` beside the compose file; fails in one line."""

    def run(call: ops.ComposeCall) -> str:
        argv = ["docker", "compose", "--env-file", str(env_file), *call.args]
        try:
            done = subprocess.run(
                argv, input=call.stdin, capture_output=True, text=True, check=False, timeout=900
            )
        except FileNotFoundError as exc:
            raise MissingBinaryError(
                "docker is not installed here", fix="run it on the compose host"
            ) from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ServiceError(
                f"docker compose {call.args[0]} failed: {last}",
                fix="fix that, then run the same `rotate` again (it repairs a half-done run)",
            )
        return done.stdout

    return run
