"""`bench`: the side-by-side benchmark harness (benchmarks/harness/ in a source checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from mlops_platform.errors import ConfigError

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def register(app: typer.Typer) -> None:
    app.command("bench", context_settings=CONTEXT, add_help_option=False)(bench)


def checkout() -> Path:
    """The source checkout holding benchmarks/: the working directory or the package's."""
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents):
        if (root / "benchmarks" / "harness" / "__init__.py").is_file():
            return root
    raise ConfigError(
        "bench runs from a source checkout (benchmarks/ is not installed with the package): "
        "clone the repository, then run `make bench` or `mlops-platform bench` inside it"
    )


def bench(ctx: typer.Context) -> None:
    """The kit against a default `mlflow server`, side by side, in one run.

    Writes, reads on a large database, a large artifact, start-up and memory; a table
    of medians and ratios, the figures in a file with `--output FILE`, or as the one
    JSON object on stdout with `--json`. Options: `mlops-platform bench --help`.

    Example: mlops-platform bench --quick --output bench.json
    """
    root = checkout()
    path = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *ctx.args], cwd=root, env=env, check=False
    )
    raise typer.Exit(result.returncode)
