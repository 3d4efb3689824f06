"""The admin CLI. Parses, calls the library, prints; errors become one line and exit 2.

The exit-code contract (docs/operations.md, "Exit codes"): 0 done or healthy; 1 degraded
(a check found something to fix: `doctor`, `status`, `db status`, `backup verify`);
2 refused (bad usage, bad settings, a check before any change failed, a prompt answered
no or unanswerable); 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import typer

from mlops_platform.cli import (
    backup,
    bench,
    compose,
    config,
    db,
    deploy,
    doctor,
    gc,
    metrics,
    registry,
    rotate,
    s3,
    serve,
    stack,
    users,
)
from mlops_platform.cli.common import app
from mlops_platform.errors import PlatformError
from mlops_platform.stack.base import PRIVATE_UMASK

EXIT_OK, EXIT_DEGRADED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130

config.register(app)
serve.register(app)
stack.register(app)
db.register(app)
s3.register(app)
doctor.register(app)
registry.register(app)
deploy.register(app)
backup.register(app)
gc.register(app)
bench.register(app)
compose.register(app)
rotate.register(app)
metrics.register(app)
users.register(app)


def main() -> None:
    """Run the CLI; every failure is one line on stderr and a documented exit code."""
    os.umask(PRIVATE_UMASK)  # what the kit and its children write is the owner's only
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # a prompt answered no (or Ctrl-D): a refusal, like no terminal
        typer.echo(
            "error: not confirmed; nothing was changed (pass --yes to skip the question)", err=True
        )
        sys.exit(EXIT_REFUSED)
    except typer.TyperException as exc:  # usage errors: bad option, value or command
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message.strip():  # blank when the group printed its help for missing args
            typer.echo(f"error: {' '.join(message.split())}{where}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except PlatformError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        refused = _server_refusal(exc)
        if refused is None:
            raise
        typer.echo(f"error: {refused}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _server_refusal(exc: Exception) -> str | None:
    """One line for an error the tracking server answered (403, 401, ...), else None."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    message = " ".join(str(exc.message).split())[:400]
    if exc.error_code == "PERMISSION_DENIED":
        return (
            f"the tracking server refused: {message}; ask an admin for the role or grant "
            "(mlops-platform users role / users grant, docs/access.md)"
        )
    if exc.error_code == "UNAUTHENTICATED":
        return f"the tracking server refused the login: {message}; check MLFLOW_TRACKING_*"
    return f"the tracking server answered: {message}"


__all__ = ["app", "main"]
