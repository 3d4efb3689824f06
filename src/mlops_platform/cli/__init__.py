"""The admin CLI. Parses, calls the library, prints; errors become one line and exit 2."""

from __future__ import annotations

import sys

import typer

from mlops_platform.cli import config, serve, stack
from mlops_platform.cli.common import app
from mlops_platform.errors import PlatformError

config.register(app)
serve.register(app)
stack.register(app)


def main() -> None:
    try:
        app()
    except PlatformError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["app", "main"]
