"""Artifact uploads passed on to the object store while they arrive.

MLflow's proxied upload (``PUT /api/2.0/mlflow-artifacts/artifacts/<path>``, and its
``/ajax-api`` twin) writes the whole request body to a temporary file on the server and
only then uploads that file to the store: a 1 GB model is received, then sent, one after
the other, and needs that much free disk on the server. Here the same route hands the body
to boto3's managed upload (``upload_fileobj``) through a small bounded pipe: parts go to
the store (a multipart upload once the body passes boto3's threshold) while the next ones
are still arriving, and nothing is written to the server's disk.

What MLflow decides stays MLflow's: the route keeps its path and method (its security
middleware and, with permissions on, the permission check on the experiment still run
first), the path is validated and scoped by MLflow's own functions, and the object gets
MLflow's key and upload arguments (the type guessed from the file name, the expected
bucket owner, ``MLFLOW_S3_UPLOAD_EXTRA_ARGS``). Anything outside the plain case
(artifact serving off, a store other than S3, a path without a file name) goes to
MLflow's own view unchanged.

A body of known length with nothing but a type and an encoding to set, bound for a
plain-HTTP store (the kit's own SeaweedFS), goes as one ``PUT`` of a presigned URL
instead, written to the store's connection as it arrives: the store takes one streamed
object for less work than the parts of a multipart upload (SeaweedFS, 1 GB on these two
cores: 153 MB/s in one PUT against 96 with boto3's parts), and the server does no more
than copy bytes. Anything else (no ``Content-Length``, under one part, over S3's 5 GiB
for one PUT, an https store, other upload arguments) takes boto3's managed upload.

A body that does not arrive whole (the client gone, the connection cut) leaves no object:
the pipe raises to boto3, which aborts the multipart upload, and a body small enough for
one ``PutObject`` is never sent; a single PUT is cut off short of its length, which the
store refuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import mimetypes
import posixpath
import queue
import threading
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from mlops_platform.artifact_clients import CLIENTS, resolve

UPLOAD_PATHS = (
    "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
)
BLOCK_BYTES = 1024 * 1024  # what the request hands the pipe at a time
PIPE_BLOCKS = 8  # blocks held in the pipe at most
PART_BYTES = 8 * 1024 * 1024  # boto3's own default part and threshold
PARTS_IN_FLIGHT = 4  # parts in memory and being sent at once, per upload (~32 MB)
SINGLE_PUT_MAX = 5 * 1024**3  # S3's limit on one PutObject
PUT_URL_SECONDS = 300  # the URL is used at once; the store checks it when the PUT starts
STORE_TIMEOUT = 120.0  # seconds the store may take to read a block or answer
# The upload arguments a single PUT sends itself, as the headers they are.
PLAIN_HEADERS = {"ContentType": "Content-Type", "ContentEncoding": "Content-Encoding"}
_END = object()


class BodyPipe:
    """The request body as a file boto3 can read: the event loop feeds blocks in, boto3's
    thread reads them out. ``read(n)`` returns n bytes, fewer only at the end; it raises
    whatever ``fail`` was given. Bounded: at most ``PIPE_BLOCKS`` blocks wait in it.

    The request's chunks are passed on as they came (a block is a list of them) and
    joined once, into the piece boto3 asked for.
    """

    def __init__(self) -> None:
        self._blocks: queue.Queue[Any] = queue.Queue(maxsize=PIPE_BLOCKS)
        self._held: list[bytes] = []  # what the request has sent, not yet a whole block
        self._held_bytes = 0
        self._left: deque[memoryview] = deque()  # taken from the queue, not returned yet
        self._left_bytes = 0
        self._ended = False
        self.closed = threading.Event()  # the reader stopped: the upload ended or failed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None  # set by the reader when it takes a block

    # -- the event loop's side ---------------------------------------------------------

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        if self._held_bytes >= BLOCK_BYTES:
            block, self._held, self._held_bytes = self._held, [], 0
            await self._put(block)

    async def finish(self) -> None:
        """The body is whole: what is held goes in, then the end."""
        if self._held:
            block, self._held, self._held_bytes = self._held, [], 0
            await self._put(block)
        await self._put(_END)

    async def fail(self, exc: BaseException) -> None:
        """The body will not be whole: the reader raises ``exc``."""
        self._held, self._held_bytes = [], 0
        await self._put(exc)

    async def _put(self, item: Any) -> None:
        """Put ITEM in, waiting on the event loop (never in a pool thread: with every pool
        thread held by a sending upload, a waiting put would never run) until the reader
        makes room or stops."""
        if self._room is None:
            self._loop, self._room = asyncio.get_running_loop(), asyncio.Event()
        while not self.closed.is_set():
            try:
                self._blocks.put_nowait(item)
                return
            except queue.Full:
                self._room.clear()
                if self._blocks.full() and not self.closed.is_set():
                    await self._room.wait()

    def _made_room(self) -> None:
        """From the reader's thread: wake a put waiting on the event loop."""
        loop, room = self._loop, self._room
        if loop is not None and room is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(room.set)

    # -- boto3's side --------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        want = None if size is None or size < 0 else size
        while (want is None or self._left_bytes < want) and not self._ended:
            item = self._blocks.get()
            self._made_room()
            if item is _END:
                self._ended = True
            elif isinstance(item, BaseException):
                self._ended = True
                raise item
            else:
                for chunk in item:
                    self._left.append(memoryview(chunk))
                    self._left_bytes += len(chunk)
        if want is None or self._left_bytes <= want:
            whole, self._left, self._left_bytes = self._left, deque(), 0
            return b"".join(whole)
        out: list[memoryview] = []
        taken = 0
        while taken < want:
            piece = self._left.popleft()
            if taken + len(piece) > want:
                cut = want - taken
                self._left.appendleft(piece[cut:])
                piece = piece[:cut]
            out.append(piece)
            taken += len(piece)
        self._left_bytes -= taken
        return b"".join(out)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed.set()
        self._made_room()


class UploadCut(Exception):
    """The request body did not arrive whole."""


class StoreRefused(Exception):
    """The object store did not take a single PUT."""


def upload_args(repo: Any, filename: str) -> dict[str, Any]:
    """The ``ExtraArgs`` MLflow's S3 repository gives an upload of FILENAME: the type and
    encoding guessed from its name, the expected bucket owner, then the environment's."""
    extra: dict[str, Any] = {}
    guessed_type, guessed_encoding = mimetypes.guess_type(filename)
    if guessed_type is not None:
        extra["ContentType"] = guessed_type
    if guessed_encoding is not None:
        extra["ContentEncoding"] = guessed_encoding
    extra.update(repo._bucket_owner_params)
    environ = repo.get_s3_file_upload_extra_args()
    if environ is not None:
        extra.update(environ)
    return extra


def _send(client: Any, pipe: BodyPipe, bucket: str, key: str, extra: dict[str, Any]) -> None:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=PARTS_IN_FLIGHT,
    )
    config.max_in_memory_upload_chunks = PARTS_IN_FLIGHT  # s3transfer's; boto3 takes no keyword
    try:
        client.upload_fileobj(pipe, bucket, key, ExtraArgs=extra, Config=config)
    finally:
        pipe.close()


def single_put_url(
    client: Any, bucket: str, key: str, extra: dict[str, Any], length: int | None
) -> str | None:
    """A presigned PUT of the object when the body can go to the store in one request of
    LENGTH bytes; None when boto3's managed upload should take it."""
    if length is None or not PART_BYTES <= length <= SINGLE_PUT_MAX:
        return None
    if set(extra) - set(PLAIN_HEADERS):
        return None
    if urlsplit(client.meta.endpoint_url).scheme != "http":
        return None
    return str(
        client.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, **extra},
            ExpiresIn=PUT_URL_SECONDS,
        )
    )


def _put_whole(url: str, pipe: BodyPipe, length: int, extra: dict[str, Any]) -> None:
    """The body to the store as one PUT of LENGTH bytes to the presigned URL, each block
    written as it comes out of the pipe. Raises what the pipe raises (the body cut: the
    connection closes short of LENGTH, and the store keeps nothing) or StoreRefused."""
    parts = urlsplit(url)
    store = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=STORE_TIMEOUT)
    try:
        store.putrequest("PUT", f"{parts.path}?{parts.query}", skip_host=True,
                         skip_accept_encoding=True)  # fmt: skip
        store.putheader("Host", parts.netloc)  # the name the URL is signed for
        store.putheader("Content-Length", str(length))
        for arg, header in PLAIN_HEADERS.items():
            if arg in extra:
                store.putheader(header, extra[arg])
        store.endheaders()
        sent = 0
        with contextlib.suppress(OSError):  # the store stopped reading: its answer says why
            while sent < length:
                block = pipe.read(min(BLOCK_BYTES, length - sent))
                if not block:
                    raise UploadCut(f"the request body ended after {sent} of {length} bytes")
                store.send(block)
                sent += len(block)
        try:
            answer = store.getresponse()
            said = answer.read(2048)
        except OSError as exc:
            raise StoreRefused(f"the object store did not answer the upload: {exc}") from exc
        if answer.status != 200:
            raise StoreRefused(
                f"the object store refused the upload: {answer.status} {said[:300]!r}"
            )
    finally:
        store.close()
        pipe.close()


def _in_own_thread(work: Any, *args: Any) -> asyncio.Future[Any]:
    """WORK(*ARGS) in a thread of its own, as a future of the running loop. Not the loop's
    shared pool: an upload holds its thread for as long as its body takes to arrive, and
    a few slow uploads would hold the whole pool (os.cpu_count() + 4 threads)."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(work(*args))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name="mlops-artifact-upload", daemon=True).start()
    return asyncio.wrap_future(done)


def _content_length(request: Request) -> int | None:
    """The body's announced length; None when it is sent in chunks or says nothing."""
    value = request.headers.get("content-length")
    if value is None or "transfer-encoding" in request.headers or not value.isdigit():
        return None
    return int(value)


async def upload_artifact(artifact_path: str, request: Request) -> Response:
    """MLflow's upload view, the body passed on as it arrives; MLflow's own view for
    anything else."""
    from mlflow.server import artifact_router as upstream
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    if not upstream._is_serving_proxied_artifacts():
        return await upstream.upload_artifact(artifact_path, request)
    resolved = resolve(artifact_path)
    if not isinstance(resolved, tuple):
        return resolved
    path, repo = resolved
    tail = posixpath.basename(path)
    if not isinstance(repo, S3ArtifactRepository) or not tail:
        return await upstream.upload_artifact(artifact_path, request)

    bucket, root = repo.parse_s3_compliant_uri(repo.artifact_uri)
    key = posixpath.join(root, path)
    client = CLIENTS.get(repo)
    extra = upload_args(repo, tail)
    length = _content_length(request)
    pipe = BodyPipe()
    url = single_put_url(client, bucket, key, extra, length)
    if url is not None and length is not None:
        sending = _in_own_thread(_put_whole, url, pipe, length, extra)
    else:
        sending = _in_own_thread(_send, client, pipe, bucket, key, extra)
    try:
        async for chunk in request.stream():
            if sending.done():  # the store refused: stop reading, say why below
                break
            await pipe.feed(chunk)
        else:
            await pipe.finish()
    except BaseException as exc:
        await pipe.fail(UploadCut(f"the request body did not arrive whole: {exc!r}"))
        try:
            await sending
        except Exception:  # the cut is the error to report; the upload was aborted
            pass
        raise
    await sending  # the store's error, if any, is the server's 500, as in MLflow's view
    return Response(status_code=200)
