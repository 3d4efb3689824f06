"""What the kit's artifact views share (:mod:`mlops_platform.artifact_stream` for
downloads, :mod:`mlops_platform.artifact_upload` for uploads): MLflow's own resolution of
a request's artifact path, and one S3 client per tracking worker, built through MLflow's
repository and renewed in the background."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from starlette.responses import Response

_logger = logging.getLogger(__name__)

CLIENT_RENEW_SECONDS = 300.0  # MLflow's own cache renews its clients on the same period


class ClientKeeper:
    """One S3 client per worker, built through MLflow's repository and renewed in the
    background.

    ``get`` never waits for a renewal: once the client is older than ``renew_seconds``
    one thread builds the next while requests keep the current one. Only a request that
    comes before the first client exists (or for another repository) builds one itself.
    """

    def __init__(self, renew_seconds: float = CLIENT_RENEW_SECONDS) -> None:
        self.renew_seconds = renew_seconds
        self._lock = threading.Lock()
        self._repo: Any = None
        self._client: Any = None
        self._built = 0.0
        self._renewing: threading.Thread | None = None

    def warm(self, repo: Any) -> None:
        """Build the client now (the worker's start-up)."""
        self._store(repo, repo._get_s3_client())

    def get(self, repo: Any) -> Any:
        with self._lock:
            client, same = self._client, self._repo is repo
            stale = time.monotonic() - self._built > self.renew_seconds
            if client is not None and same and stale and self._renewing is None:
                self._renewing = threading.Thread(
                    target=self._renew, args=(repo,), name="mlops-s3-client-renew", daemon=True
                )
                self._renewing.start()
        if client is None or not same:
            client = repo._get_s3_client()
            self._store(repo, client)
        return client

    def _store(self, repo: Any, client: Any) -> None:
        with self._lock:
            self._repo, self._client, self._built = repo, client, time.monotonic()

    def _renew(self, repo: Any) -> None:
        try:
            self._store(repo, repo._get_s3_client())
        except Exception:  # the current client stays; the next request tries again
            _logger.warning("mlops-platform: renewing the S3 client failed", exc_info=True)
        finally:
            with self._lock:
                self._renewing = None


CLIENTS = ClientKeeper()


def resolve(artifact_path: str) -> tuple[str, Any] | Response:
    """ARTIFACT_PATH as MLflow's artifact views take it: ``(path, repository)``, validated
    and scoped by MLflow's functions; or, for a path MLflow refuses, MLflow's JSON error
    response."""
    from fastapi.responses import JSONResponse
    from mlflow.exceptions import MlflowException
    from mlflow.server import artifact_router as upstream
    from mlflow.utils.uri import validate_path_is_safe

    try:
        path = validate_path_is_safe(artifact_path)
        path = upstream._get_workspace_scoped_path(path)
        return path, upstream._get_artifact_repo()
    except MlflowException as exc:
        return JSONResponse(
            status_code=exc.get_http_status_code(), content=json.loads(exc.serialize_as_json())
        )
