"""The admin CLI. Parses, calls the library, prints; errors become one line and exit 2.

The exit-code contract (docs/operations.md, "Exit codes"): 0 done or healthy; 1 degraded
(a check found something to fix: `doctor`, `status`, `db status`, `backup verify`);
2 refused (bad usage, bad settings, a check before any change failed, a prompt answered
no or unanswerable); 130 interrupted.

Under `--json` stdout carries exactly one JSON object (cli.common.emit): the command's, or
for a refusal ``{"ok": false, "error": LINE}`` with LINE also on stderr.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import NoReturn

import typer

from mlops_platform import gc_tuning
from mlops_platform.cli import common
from mlops_platform.cli.common import _Output, emit_error, json_requested
from mlops_platform.errors import PlatformError
from mlops_platform.settings.process import PRIVATE_UMASK

EXIT_OK, EXIT_DEGRADED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130

# The command modules, in the order `--help` lists their commands, and the words each adds
# to the root. A command line imports only the module its first word names: `registry
# approve` does not load the database, S3 and backup code (about a second of imports on
# every call). tests/unit/test_cli.py holds WORDS to what the modules register.
MODULES = (
    "config", "serve", "stack", "db", "s3", "doctor", "registry", "deploy", "backup", "gc",
    "bench", "compose", "rotate", "metrics", "users",
)  # fmt: skip
WORDS = {
    "init": "config", "config": "config", "serve": "serve", "up": "stack", "down": "stack",
    "status": "stack", "logs": "stack", "client-env": "stack", "restart": "stack",
    "db": "db", "s3": "s3", "doctor": "doctor", "health": "doctor", "registry": "registry",
    "deploy": "deploy", "backup": "backup", "gc": "gc", "bench": "bench",
    "compose": "compose", "rotate": "rotate", "metrics": "metrics", "users": "users",
}  # fmt: skip
_ROOT_OPTIONS_WITH_VALUE = ("--env-file",)


def modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules a command line needs: its first word's, or all of them (for
    `--help`, `--version`, no word, or a word that is not a command)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _ROOT_OPTIONS_WITH_VALUE:
            i += 2
        elif word.split("=", 1)[0] in _ROOT_OPTIONS_WITH_VALUE:
            i += 1
        elif word.startswith("-"):
            return MODULES
        else:
            return (WORDS[word],) if word in WORDS else MODULES
    return MODULES


def build(modules: tuple[str, ...] = MODULES) -> typer.Typer:
    """A root command with the commands of ``modules``, in MODULES' order."""
    root = common.new_app()
    for name in MODULES:
        if name in modules:
            importlib.import_module(f"mlops_platform.cli.{name}").register(root)
    return root


def __getattr__(name: str) -> typer.Typer:
    """``mlops_platform.cli.app``: the whole CLI, built on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _whole_app()


@functools.cache
def _whole_app() -> typer.Typer:
    return build()


def main() -> None:
    """Run the CLI; every failure is one line on stderr and a documented exit code (and,
    under --json, that line as the one JSON object on stdout)."""
    os.umask(PRIVATE_UMASK)  # what the kit and its children write is the owner's only
    gc_tuning.tune()
    _Output.emitted = False
    as_json = json_requested(sys.argv[1:])
    app = globals().get("app") or build(modules_for(sys.argv[1:]))  # a test may set its own

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
