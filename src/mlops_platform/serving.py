"""Model serving's entry: serve only an approved version whose files match its approval.

``mlops-platform registry serve NAME --alias champion`` (the serving image's command)
resolves the alias, downloads the version through the tracking server into a local
folder, checks that copy against the ``mlops.artifacts_digest`` its approval pinned
(:meth:`Registry.fetch_verified`), and only then execs MLflow's scoring server on that
folder. The server loads the bytes that were checked, not a second download.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlops_platform.registry import Registry, VerifiedCopy
from mlops_platform.render.serving import serve_argv


def prepare(
    registry: Registry,
    name: str,
    alias: str,
    model_dir: Path,
    *,
    host: str,
    port: int,
    workers: int,
) -> tuple[VerifiedCopy, list[str]]:
    """Everything before the exec: the verified copy and the scoring server's argv."""
    model_dir.mkdir(parents=True, exist_ok=True)
    copy = registry.fetch_verified(name, model_dir, alias=alias)
    argv = serve_argv(str(copy.path), host=host, port=port, workers=workers, python=sys.executable)
    return copy, argv


def exec_server(argv: list[str]) -> None:  # pragma: no cover - replaces the process
    os.execvp(argv[0], argv)
