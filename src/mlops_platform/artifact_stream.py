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

Behind the kit's nginx the bytes need not cross Python at all: an allowed download is
handed to nginx, which fetches the object from the store itself (``artifact_handover``).
Without that (another proxy, an https store, a direct call) the view streams as below.

The worker's app is this module's factory (``mlops_platform.mlflow_server`` puts it in
uvicorn's command): it builds the app MLflow would have built, then swaps the view.

Two things keep the first byte quick and the memory bounded:

- the S3 client is built once per worker, when the worker starts, through MLflow's own
  repository (``S3ArtifactRepository._get_s3_client``: its credentials, endpoint and
  settings), and renewed off the request path every ``CLIENT_RENEW_SECONDS`` (MLflow's own
  cache renews its clients on the same period); building one costs tens of milliseconds;
- one reader thread per download reads the body ahead into a small bounded queue (a
  ``FIRST_PIECE_BYTES`` piece first, so the first byte leaves at once, then
  ``PIECE_BYTES`` pieces, at most ``AHEAD`` of them held), and the response sends from the
  queue; when the client goes away the thread stops and closes the body (no temporary
  file, no leaked thread or connection).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import posixpath
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mlops_platform import artifact_handover as handover
from mlops_platform import artifact_send, gc_tuning, proxied_artifacts, route_memo, wsgi_bridge
from mlops_platform import artifact_upload as upload
from mlops_platform.artifact_clients import CLIENTS, resolve

_logger = logging.getLogger(__name__)

# The app targets MLflow puts in uvicorn's command, and this module's stand-in for each.
TARGETS = {
    "mlflow.server.fastapi_app:app": "mlops_platform.artifact_stream:create_default_app",
    "mlops_platform.auth_app:create_app": "mlops_platform.artifact_stream:create_auth_app",
}
DOWNLOAD_PATHS = (
    "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
)
FIRST_PIECE_BYTES = 64 * 1024
PIECE_BYTES = 1024 * 1024
AHEAD = 4  # pieces held per download at most: read ahead and waiting to be sent
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


_END = object()


class ReadAhead:
    """One thread reading an S3 body ahead into a bounded queue that the response sends
    from: a ``FIRST_PIECE_BYTES`` piece, then ``PIECE_BYTES`` pieces; ``AHEAD`` pieces held
    at most (the one being read included). ``stop`` ends the thread and closes the body.
    """

    def __init__(self, body: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._body = body
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=AHEAD - 1)
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._read, name="mlops-artifact-read", daemon=True)

    def start(self) -> ReadAhead:
        self.thread.start()
        return self

    async def pieces(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop()

    def stop(self) -> None:
        """From the event loop: end the thread, whatever it is doing."""
        self._stopped.set()
        while not self._queue.empty():  # a thread waiting to hand over a piece gets its room
            self._queue.get_nowait()

    def _read(self) -> None:
        try:
            size = FIRST_PIECE_BYTES
            while not self._stopped.is_set():
                piece = self._body.read(size)
                size = PIECE_BYTES
                if not self._hand_over(piece or _END) or not piece:
                    return
        except Exception as exc:  # the response raises it: the connection is cut short
            self._hand_over(exc)
        finally:
            with contextlib.suppress(Exception):
                self._body.close()

    def _hand_over(self, item: Any) -> bool:
        """Put ``item`` in the queue, waiting for room; False once stopped."""
        try:
            done = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is gone
            return False
        while True:
            try:
                done.result(timeout=1.0)
                return not self._stopped.is_set()
            except concurrent.futures.TimeoutError:
                if self._stopped.is_set() or self._loop.is_closed():
                    done.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False


class ReadAheadResponse(StreamingResponse):
    """A streamed response whose reader stops however the response ends (sent, failed, or
    the client gone), not when the garbage collector gets to the generator."""

    def __init__(self, reader: ReadAhead, **kwargs: Any) -> None:
        super().__init__(reader.pieces(), **kwargs)
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.reader.stop()


async def download_artifact(artifact_path: str, request: Request) -> Response:
    """MLflow's download view, streamed; MLflow's own view for anything else."""
    from botocore.exceptions import ClientError
    from mlflow.server import artifact_router as upstream
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
    from mlflow.utils.mime_type_utils import _guess_mime_type

    if not upstream._is_serving_proxied_artifacts():
        return await upstream.download_artifact(artifact_path)
    resolved = resolve(artifact_path)
    if not isinstance(resolved, tuple):
        return resolved
    path, repo = resolved
    if not isinstance(repo, S3ArtifactRepository) or not path or path.endswith("/"):
        return await upstream.download_artifact(artifact_path)

    bucket, root = repo.parse_s3_compliant_uri(repo.artifact_uri)
    key = posixpath.join(root, path)
    wanted = s3_range(request.headers.get("range"))
    extra: dict[str, Any] = dict(repo._bucket_owner_params)
    if wanted:
        extra["Range"] = wanted
    client = CLIENTS.get(repo)
    if handover.nginx_can_fetch(repo, client, request.headers.get(handover.STORE_HEADER)):
        target = await asyncio.to_thread(handover.nginx_target, client, bucket, key)
        if target is None:  # not an object: MLflow's own view decides, as below
            return await upstream.download_artifact(artifact_path)
        if target:
            return Response(headers={"X-Accel-Redirect": target})
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
    reader = ReadAhead(obj["Body"], asyncio.get_running_loop()).start()
    return ReadAheadResponse(reader, status_code=status, headers=headers)


def install(app: Any) -> Any:
    """Put the streamed views in front of MLflow's download and upload routes in ``app``
    (:mod:`mlops_platform.artifact_upload` for uploads); returns it.

    The routes go first in the app's router, so they match before MLflow's own (same
    path, same method). Raises RuntimeError when MLflow's routes are not where the kit
    knows them: a future MLflow that moved them should fail the start loudly, not quietly
    keep the temporary-file path.
    """
    from fastapi.routing import APIRoute
    from mlflow.server.artifact_router import artifact_router

    routes = [(path, "GET", download_artifact) for path in DOWNLOAD_PATHS] + [
        (path, "PUT", upload.upload_artifact) for path in upload.UPLOAD_PATHS
    ]
    upstream = {
        (r.path, method)
        for r in artifact_router.routes
        if isinstance(r, APIRoute)
        for method in r.methods or ()
    }
    missing = [f"{method} {path}" for path, method, _ in routes if (path, method) not in upstream]
    if missing:
        raise RuntimeError(
            "mlops-platform: MLflow's artifact routes are not where the kit expects them "
            f"({', '.join(missing)}); this MLflow is not the one it knows"
        )
    app.router.lifespan_context = _warming(app.router.lifespan_context)
    for path, method, view in reversed(routes):
        app.router.routes.insert(
            0,
            APIRoute(path, view, methods=[method], response_model=None, include_in_schema=False),
        )
    return app


def warm_client() -> bool:
    """Build this worker's S3 client (through MLflow's repository); False where downloads
    are not served from S3 here. Never raises: a failure leaves it to the first request."""
    try:
        from mlflow.server import artifact_router as upstream
        from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

        if not upstream._is_serving_proxied_artifacts():
            return False
        repo = upstream._get_artifact_repo()
        if not isinstance(repo, S3ArtifactRepository):
            return False
        CLIENTS.warm(repo)
        return True
    except Exception:
        _logger.warning("mlops-platform: the S3 client was not built at start", exc_info=True)
        return False


def _warming(lifespan: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The app's lifespan, with the S3 client built first (in a thread)."""

    @contextlib.asynccontextmanager
    async def warmed(app: Any) -> AsyncIterator[Any]:
        await asyncio.to_thread(warm_client)
        async with lifespan(app) as state:
            yield state

    return warmed


def create_default_app() -> Any:
    """``mlflow.server.fastapi_app:app`` with streamed downloads and the kit's faster
    views (:mod:`mlops_platform.fast_views`); permissions off."""
    gc_tuning.tune()
    from mlflow.server.fastapi_app import app

    from mlops_platform import fast_views

    fast_views.install()
    return _with_kit_routing(app)


def create_auth_app() -> Any:
    """The kit's auth app (:mod:`mlops_platform.auth_app`) with streamed downloads and
    the kit's faster views."""
    gc_tuning.tune()
    from mlops_platform import fast_views
    from mlops_platform.auth_app import create_app

    fast_views.install()
    return _with_kit_routing(create_app())


def _with_kit_routing(app: Any) -> Any:
    """``app`` with the streamed download and upload routes, the UI's file downloads
    handed to nginx (:mod:`mlops_platform.artifact_send`), every artifact byte through
    the proxy (:mod:`mlops_platform.proxied_artifacts`), MLflow's Flask app served
    through the kit's bridge (:mod:`mlops_platform.wsgi_bridge`) and the router's memo
    (:mod:`mlops_platform.route_memo`, installed last: it wraps the finished routes)."""
    install(app)
    artifact_send.install()
    proxied_artifacts.install(app)
    if not wsgi_bridge.install(app):
        _logger.warning("mlops-platform: MLflow's Flask mount not found: left on its bridge")
    route_memo.install(app)
    return app


def swap_target(command: list[str]) -> list[str] | None:
    """uvicorn's command with the app target replaced by this module's; None if unknown."""
    if not command or command[-1] not in TARGETS:
        return None
    swapped = [*command[:-1], TARGETS[command[-1]]]
    if "--factory" not in swapped:
        swapped.insert(len(swapped) - 1, "--factory")
    return swapped
