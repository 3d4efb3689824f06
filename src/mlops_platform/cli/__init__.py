"""The admin CLI. Parses, calls the library, prints; errors become one line and exit 2.

The exit-code contract (docs/operations.md, "Exit codes"): 0 done or healthy; 1 degraded
(a check found something to fix: `doctor`, `status`, `db status`, `backup verify`);
2 refused (bad usage, bad settings, a check before any change failed, a prompt answered
no or unanswerable); 130 interrupted.

Under `--json` stdout carries exactly one JSON object (cli.common.emit): the command's, or
for a refusal ``{"ok": false, "error": LINE}`` with LINE also on stderr.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

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
from mlops_platform.cli.common import _Output, app, emit_error, json_requested
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
    """Run the CLI; every failure is one line on stderr and a documented exit code (and,
    under --json, that line as the one JSON object on stdout)."""
    os.umask(PRIVATE_UMASK)  # what the kit and its children write is the owner's only
    _Output.emitted = False
    as_json = json_requested(sys.argv[1:])

    def refuse(message: str, code: int) -> NoReturn:
        typer.echo(f"error: {message}", err=True)
        if as_json:
            emit_error(message)
        sys.exit(code)

    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # a prompt answered no (or Ctrl-D): a refusal, like no terminal
        refuse("not confirmed; nothing was changed (pass --yes to skip the question)", EXIT_REFUSED)
    except typer.TyperException as exc:  # usage errors: bad option, value or command
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        code = int(getattr(exc, "exit_code", 2))
        if not message.strip():  # blank when the group printed its help for missing args
            sys.exit(code)
        refuse(f"{' '.join(message.split())}{where}", code)
    except PlatformError as exc:
        refuse(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        if as_json:
            emit_error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        refused = _server_refusal(exc)
        if refused is None:
            raise
        refuse(refused, EXIT_REFUSED)
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
