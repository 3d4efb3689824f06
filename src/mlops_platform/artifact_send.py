"""The files MLflow's UI downloads, handed to the kit's nginx instead of copied to disk.

Three of MLflow's Flask routes send one artifact file: ``/get-artifact`` (a run's file:
the UI's artifact preview and its download link), ``/model-versions/get-artifact`` and
``/ajax-api/2.0/mlflow/logged-models/<id>/artifacts/files``. All three end in
``mlflow.server.handlers._send_artifact``, which downloads the whole file into a
temporary folder on the server and only then sends its first byte: a 1 GB model clicked
in the UI waits for the whole gigabyte and takes that much of the server's disk.

Here that one function is replaced. When the file is an object of the server's own
artifact store (the proxied destination, S3) and the request came through the kit's
nginx, which names that store (``artifact_handover``), the answer is an
``X-Accel-Redirect`` to a presigned GET of the object: nginx fetches it from the store
and streams it, ranges included, with MLflow's headers for these routes (the type
guessed from the name, an attachment). Anything else (another repository, a folder, no
such object, a caller other than the kit's nginx) gets MLflow's own function.

The other callers keep MLflow's function whole: it copies the file to the server's
temporary folder, then Flask sends it through the kit's bridge
(:mod:`mlops_platform.wsgi_bridge`), which reads at most 1 MiB of it ahead of the client.

The permission check is untouched: MLflow's basic-auth app checks these routes before
the view runs (READ on the run's experiment, on the registered model, on the logged
model's experiment), so a refused request never gets here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from mlops_platform import artifact_handover as handover
from mlops_platform.artifact_clients import CLIENTS

_mlflows: Callable[[Any, str], Any] | None = None


def install() -> None:
    """Put ``send_artifact`` in place of MLflow's ``_send_artifact`` (once per process)."""
    global _mlflows
    from mlflow.server import handlers

    if _mlflows is None:
        _mlflows = handlers._send_artifact
        handlers._send_artifact = send_artifact


def send_artifact(artifact_repository: Any, path: str) -> Any:
    """MLflow's ``_send_artifact``, handed to nginx where it can fetch the object."""
    assert _mlflows is not None, "install() first"
    target = _handover_target(artifact_repository, path)
    if not target:
        return _mlflows(artifact_repository, path)
    from flask import Response

    return Response(status=200, headers={"X-Accel-Redirect": target})


def _handover_target(repo: Any, path: str) -> str | None:
    """The X-Accel-Redirect for PATH of REPO; None when MLflow's own function should
    answer (not the server's S3 store, not behind the kit's nginx, not an object)."""
    from flask import request
    from mlflow.server import handlers
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    offered = request.headers.get(handover.STORE_HEADER)
    # A GET only: the presigned URL is one, and the store refuses any other method on it.
    if request.method != "GET" or not offered or not path or path.endswith("/"):
        return None
    # Only the proxied destination: the repository the worker's S3 client is built for.
    # A run whose artifacts live elsewhere gets a repository of its own: MLflow's then.
    if repo is not getattr(handlers, "_artifact_repo", None):
        return None
    if not isinstance(repo, S3ArtifactRepository):
        return None
    client = CLIENTS.get(repo)
    if not handover.nginx_can_fetch(repo, client, offered):
        return None
    bucket, root = repo.parse_s3_compliant_uri(repo.artifact_uri)
    return handover.nginx_target(client, bucket, posixpath.join(root, path)) or None
