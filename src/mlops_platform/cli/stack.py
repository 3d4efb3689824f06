"""`up`, `down`, `status`, `logs`, `client-env`, `restart`: the local stack."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, progress, table
from mlops_platform.errors import PlatformError
from mlops_platform.render.server import client_env as render_client_env
from mlops_platform.stack import LocalStack
from mlops_platform.users import require_user


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("client-env")(client_env)
    app.command("restart")(restart)


def _stack(ctx: typer.Context) -> LocalStack:
    obj: Context = ctx.obj
    return LocalStack(obj.settings(), env_file=obj.env_file)


def up(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Start PostgreSQL, SeaweedFS, the tracking server and nginx; wait until healthy.

    Example: mlops-platform up
    """
    obj: Context = ctx.obj
    stack = _stack(ctx)
    result = stack.up(progress)
    obj.remember()  # commands run from other folders find this env file
    if as_json:
        emit({**result.as_dict(), "state_dir": str(stack.state_dir)})
        return
    for warning in result.warnings:
        console.print(f"[bold yellow]WARNING:[/bold yellow] {warning}")
    if not result.started:
        applied = (
            f"nothing to start; reloaded {', '.join(result.refreshed)} (configuration and "
            "password file)"
            if result.refreshed
            else "nothing to do"
        )
        console.print(f"already running: {', '.join(result.already_running)}; {applied}")
    else:
        console.print(f"started {', '.join(result.started)} in {result.seconds:.1f}s")
    console.print(f"MLflow is at [bold]{result.url}[/bold]")
    if result.user:
        console.print(
            f"log in as [bold]{result.user}[/bold]; the password is "
            f"MLOPS_PROXY_PASSWORD in {obj.env_file.absolute()}"
        )
    console.print(f"data: {stack.state_dir}", highlight=False, soft_wrap=True)
    console.print(f'clients: eval "$({cli_command()} client-env)"', highlight=False, soft_wrap=True)


def cli_command() -> str:
    """How the user can run this very CLI: its name when it is on PATH, else its path."""
    here = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if here is not None and here.name == "mlops-platform":
        on_path = shutil.which("mlops-platform")
        if on_path and Path(on_path).resolve() == here.resolve():
            return "mlops-platform"
        return shlex.quote(str(here.absolute()))
    beside = Path(sys.executable).parent / "mlops-platform"
    if beside.exists():
        on_path = shutil.which("mlops-platform")
        if on_path and Path(on_path).resolve() == beside.resolve():
            return "mlops-platform"
        return shlex.quote(str(beside))
    return "mlops-platform"


def down(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Stop the local stack. Data stays in the state folder.

    Example: mlops-platform down
    """
    obj: Context = ctx.obj
    stack = LocalStack(obj.settings(check=False, platform=True), env_file=obj.env_file)
    stopped = stack.down(progress)
    if as_json:
        emit({"stopped": stopped, "state_dir": str(stack.state_dir)})
    elif stopped:
        console.print(
            f"stopped {', '.join(stopped)}; data kept in {stack.state_dir}", soft_wrap=True
        )
    else:
        console.print("nothing was running")


def restart(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="tracking (the only service restarted in place)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Restart the tracking server's replicas one at a time, each out of nginx's rotation.

    With MLOPS_SERVER_REPLICAS=2 or more no client call is lost.

    Example: mlops-platform restart tracking
    """
    result = _stack(ctx).restart(service, progress)
    if as_json:
        emit(result.as_dict())
        return
    console.print(f"restarted {', '.join(result.restarted)} in {result.seconds:.1f}s")
    if result.note:
        console.print(f"[bold yellow]NOTE:[/bold yellow] {result.note}")


def status(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show each service with pid, port, health and memory; exit 1 if one is unhealthy.

    Example: mlops-platform status --json
    """
    obj: Context = ctx.obj
    stack = LocalStack(obj.settings(check=False, platform=True), env_file=obj.env_file)
    rows = stack.status()
    code = 0 if all(r.healthy for r in rows) else 1
    if as_json:
        emit(
            {
                "tracking_url": stack.settings.resolved_public_url,
                "state_dir": str(stack.state_dir),
                "env_file": str(obj.env_file.absolute()),
                "total_rss_mb": stack.total_rss_mb(),
                "services": [r.as_dict() for r in rows],
            },
            exit_code=code,
        )
    else:
        console.print(
            table(
                None,
                ["service", "state", "pid", "port", "rss MB", "url"],
                [
                    [
                        r.name,
                        "healthy" if r.healthy else ("unhealthy" if r.running else "stopped"),
                        r.pid,
                        r.port,
                        r.rss_mb,
                        r.url,
                    ]
                    for r in rows
                ],
            )
        )
        console.print(f"tracking URL: {stack.settings.resolved_public_url}")
        console.print(f"data: {stack.state_dir}", highlight=False, soft_wrap=True)
        console.print(f"settings: {obj.env_file.absolute()}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def logs(
    ctx: typer.Context,
    service: str = typer.Argument("tracking", help="postgres, seaweedfs, tracking or nginx."),
    lines: int = typer.Option(50, "-n", "--lines", min=1, help="How many lines from the end."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
) -> None:
    """Print a service's log.

    Example: mlops-platform logs postgres -n 100
    """
    obj: Context = ctx.obj
    stack = LocalStack(obj.settings(check=False, platform=True), env_file=obj.env_file)
    paths = [p for p in stack.log_paths(service) if p.exists()]
    if not paths:
        console.print(f"{service} has no log yet ({stack.log_path(service)})")
        return
    # Several files (nginx: error and access log): tail prints a header before each.
    argv = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(p) for p in paths]
    sys.exit(subprocess.call(argv))


def client_env(
    ctx: typer.Context,
    user: str | None = typer.Option(
        None,
        "--user",
        help="A named user's settings (no password: the kit keeps only hashes; the user "
        "sets MLFLOW_TRACKING_PASSWORD).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the shell exports that point `mlflow` clients at the platform.

    Example: eval "$(mlops-platform client-env --user alice)"
    """
    obj: Context = ctx.obj
    try:
        stack = LocalStack(obj.settings(), env_file=obj.env_file)
        if user is not None:
            require_user(stack.settings, user)
    except PlatformError:
        if not as_json:
            # Run as eval "$(mlops-platform client-env)": the eval would hide the exit
            # code and mlflow would quietly log to a local ./mlruns or mlflow.db. This
            # makes the eval itself fail and points mlflow at a URI it refuses.
            typer.echo(CLIENT_ENV_FAILED)
        raise
    env = render_client_env(stack.settings, user=user)
    if as_json:
        emit({"env": env})
        return
    for key, value in env.items():
        typer.echo(f"export {key}={shlex.quote(value)}")
    if user is not None and user != stack.settings.proxy_user:
        typer.echo(f"# then: export MLFLOW_TRACKING_PASSWORD=<{user}'s password>")


CLIENT_ENV_FAILED = (
    "# mlops-platform client-env failed (its error is above); nothing was exported\n"
    "export MLFLOW_TRACKING_URI=client-env-failed://see-the-error-above\n"
    "false"
)
