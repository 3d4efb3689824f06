"""Artifact downloads streamed from the object store to the client as they arrive.

MLflow's proxied download (``GET /api/2.0/mlflow-artifacts/artifacts/<path>``, and its
``/ajax-api`` twin) first copies the whole object to a temporary file on the server and
only then sends the first byte: a 1 GB model waits for the whole gigabyte and needs
that much free disk. Here the same route answers from the object store directly: one
``GetObject`` whose body is passed on chunk by chunk, with ``Content-Length``, and a
single ``Range`` honoured (206, or 416 when it cannot be satisfied).

Only the view changes. The route keeps its path and method, so everything MLflow runs
around it still runs: its security middleware, and with permissions on, the basic-auth
app's permission middleware, which picks its check (READ on the run's experiment for a
download) from the path and method alone, never from the view. Anything outside the
plain case (artifact serving off, a store other than S3, a path that is not an object,
such as a folder) is handed to MLflow's own view unchanged.

The worker's app is this module's factory (``mlops_platform.mlflow_server`` puts it in
uvicorn's command): it builds the app MLflow would have built, then swaps the view.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

# The app targets MLflow puts in uvicorn's command, and this module's stand-in for each.
TARGETS = {
    "mlflow.server.fastapi_app:app": "mlops_platform.artifact_stream:create_default_app",
    "mlops_platform.auth_app:create_app": "mlops_platform.artifact_stream:create_auth_app",
}
DOWNLOAD_PATHS = (
    "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
)
CHUNK_BYTES = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def s3_range(header: str | None) -> str | None:
    """A single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range to pass on; else None.

    Several ranges, or anything malformed, are ignored: the whole object is sent (200),
    which RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if start and end and int(end) < int(start):
        return None
    return f"bytes={start}-{end}"


def _body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()


async def download_artifact(artifact_path: str, request: Request) -> Response:
    """MLflow's download view, streamed; MLflow's own view for anything else."""
    from botocore.exceptions import ClientError
    from fastapi.responses import JSONResponse, StreamingResponse
    from mlflow.exceptions import MlflowException
    from mlflow.server import artifact_router as upstream
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
    from mlflow.utils.mime_type_utils import _guess_mime_type
    from mlflow.utils.uri import validate_path_is_safe

    if not upstream._is_serving_proxied_artifacts():
        return await upstream.download_artifact(artifact_path)
    try:
        path = validate_path_is_safe(artifact_path)
        path = upstream._get_workspace_scoped_path(path)
        repo = upstream._get_artifact_repo()
    except MlflowException as exc:
        return JSONResponse(
            status_code=exc.get_http_status_code(), content=json.loads(exc.serialize_as_json())
        )
    if not isinstance(repo, S3ArtifactRepository) or not path or path.endswith("/"):
        return await upstream.download_artifact(artifact_path)

    bucket, root = repo.parse_s3_compliant_uri(repo.artifact_uri)
    key = posixpath.join(root, path)
    wanted = s3_range(request.headers.get("range"))
    extra: dict[str, Any] = dict(repo._bucket_owner_params)
    if wanted:
        extra["Range"] = wanted
    client = repo._get_s3_client()
    try:
        obj = await asyncio.to_thread(client.get_object, Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        from mlops_platform.s3.helpers import error_code

        if error_code(exc) == "InvalidRange":
            head = await asyncio.to_thread(client.head_object, Bucket=bucket, Key=key)
            return Response(
                status_code=416,
                headers={"Content-Range": f"bytes */{head.get('ContentLength', 0)}"},
            )
        # Not an object (a folder, or nothing): MLflow's own view decides, as before.
        return await upstream.download_artifact(artifact_path)

    filename = posixpath.basename(path)
    headers = {
        "Content-Type": _guess_mime_type(filename),
        "Content-Disposition": upstream._content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Length": str(obj["ContentLength"]),
        "Accept-Ranges": "bytes",
    }
    if obj.get("ETag"):
        headers["ETag"] = obj["ETag"]
    status = 200
    if wanted and obj.get("ContentRange"):
        status = 206
        headers["Content-Range"] = obj["ContentRange"]
    return StreamingResponse(_body_chunks(obj["Body"]), status_code=status, headers=headers)


def install(app: Any) -> Any:
    """Put the streamed view in front of MLflow's download routes in ``app``; returns it.

    The routes go first in the app's router, so they match before MLflow's own (same
    path, same method). Raises RuntimeError when MLflow's routes are not where the kit
    knows them: a future MLflow that moved them should fail the start loudly, not quietly
    keep the temporary-file path.
    """
    from fastapi.routing import APIRoute
    from mlflow.server.artifact_router import artifact_router

    upstream = {
        r.path
        for r in artifact_router.routes
        if isinstance(r, APIRoute) and "GET" in (r.methods or ())
    }
    if not set(DOWNLOAD_PATHS) <= upstream:
        raise RuntimeError(
            "mlops-platform: MLflow's artifact download routes are not where the kit "
            f"expects them ({', '.join(DOWNLOAD_PATHS)}); this MLflow is not the one it knows"
        )
    for path in reversed(DOWNLOAD_PATHS):
        app.router.routes.insert(
            0,
            APIRoute(
                path,
                download_artifact,
                methods=["GET"],
                response_model=None,
                include_in_schema=False,
            ),
        )
    return app


def create_default_app() -> Any:
    """``mlflow.server.fastapi_app:app`` with streamed downloads and the kit's faster
    views (:mod:`mlops_platform.fast_views`); permissions off."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import app

    from mlops_platform import fast_views

    fast_views.install(flask_app)
    return install(app)


def create_auth_app() -> Any:
    """The kit's auth app (:mod:`mlops_platform.auth_app`) with streamed downloads and
    the kit's faster views."""
    from mlflow.server import app as flask_app

    from mlops_platform import fast_views
    from mlops_platform.auth_app import create_app

    fast_views.install(flask_app)
    return install(create_app())


def swap_target(command: list[str]) -> list[str] | None:
    """uvicorn's command with the app target replaced by this module's; None if unknown."""
    if not command or command[-1] not in TARGETS:
        return None
    swapped = [*command[:-1], TARGETS[command[-1]]]
    if "--factory" not in swapped:
        swapped.insert(len(swapped) - 1, "--factory")
    return swapped
