"""The tracking server's bridge to MLflow's Flask app, without a round trip per message.

MLflow serves its REST API (``/api/2.0/mlflow/...``, the UI's ``ajax-api``) from a Flask
app mounted in its FastAPI app behind ``_EfficientWSGIMiddleware``, Starlette's
deprecated WSGI bridge with the request body joined once. For each request that bridge
starts a task group and a memory stream, runs Flask in a worker thread, and the thread
hands every message of the response (the status and headers, each piece of the body,
the end) to the event loop with ``anyio.from_thread.run``, which blocks the thread until
the loop has taken it: three waits on the loop for a short JSON answer.

:class:`FlaskBridge` keeps what that bridge does (the whole body read first, Starlette's
``build_environ``, Flask in anyio's worker threads under the same limiter, each piece of
the body sent as Flask yields it, the end sent once Flask returns, ``exc_info`` raised
after, a WebSocket refused) but the thread queues each message for the loop without
waiting for it, and calls the response's ``close()`` as a WSGI server must. On a 2-core
machine, a 1 KB JSON answer from Flask through uvicorn (``python -m
benchmarks.wsgi_bridge``): p50 0.85-0.95 -> 0.45-0.51 ms, server CPU per request
0.85-0.94 -> 0.35-0.41 ms (``a2wsgi``, Starlette's suggested replacement: 0.64-0.66 ms,
with an environ and a thread pool of its own).

A large answer Flask streams (``send_file`` in 8 KB pieces: MLflow's ``get-artifact``
for a store nginx does not fetch from, or a caller that does not come through nginx)
paid that wait per piece: 50 MB/s through MLflow's bridge, 530-570 MB/s through this
one. And Starlette's stream is unbounded (``math.inf``): behind a slow client its thread
read the file into the server's memory ahead of the client. Here the thread stops
:data:`MAX_UNSENT` (1 MiB) ahead and waits for the client.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import anyio.to_thread

with warnings.catch_warnings():  # deprecated with the bridge MLflow uses (it imports it too)
    warnings.filterwarnings("ignore", "starlette.middleware.wsgi is deprecated")
    from starlette.middleware.wsgi import build_environ

Message = dict[str, Any]
MAX_UNSENT = 1 << 20  # bytes of body the thread may read ahead of the client
_END = None  # what the thread queues once Flask's response is exhausted


class _Response:
    """One call of the WSGI app: its messages queued for the event loop as they come,
    at most :data:`MAX_UNSENT` bytes of body ahead of what the client has taken."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self._loop, self._queue = loop, queue
        self.started = False
        self.exc_info: Any = None
        self._room = threading.Condition()
        self._unsent = 0  # bytes of body queued and not yet sent
        self._abandoned = False

    def _queue_message(self, message: Message | None) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)

    def _wait_for_room(self, size: int) -> bool:
        """In the thread: until the client has taken enough; False once abandoned."""
        with self._room:
            while self._unsent >= MAX_UNSENT and not self._abandoned:
                self._room.wait()
            self._unsent += size
            return not self._abandoned

    def sent(self, size: int) -> None:
        """On the loop: SIZE bytes of body went out."""
        with self._room:
            self._unsent -= size
            if self._unsent < MAX_UNSENT:
                self._room.notify()

    def abandon(self) -> None:
        """On the loop: nobody sends what the thread queues any more; it stops reading."""
        with self._room:
            self._abandoned = True
            self._room.notify()

    def start_response(
        self, status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        self.exc_info = exc_info
        if self.started:
            return
        self.started = True
        headers = [
            (name.strip().encode("ascii").lower(), value.strip().encode("ascii"))
            for name, value in response_headers
        ]
        code = int(status.split(" ", 1)[0])
        self._queue_message({"type": "http.response.start", "status": code, "headers": headers})

    def run(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
        """Call the app in this (worker) thread and queue its body as it comes."""
        try:
            body = app(environ, self.start_response)
            try:
                for chunk in body:
                    if not self._wait_for_room(len(chunk)):
                        break
                    self._queue_message(
                        {"type": "http.response.body", "body": chunk, "more_body": True}
                    )
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        finally:
            self._queue_message(_END)


class FlaskBridge:
    """ASGI app that serves a WSGI app (MLflow's Flask app) from anyio's worker threads."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # WSGI cannot serve one: refused, as MLflow does
                await send({"type": "websocket.close", "code": 1000})
            return
        chunks: list[bytes] = []
        more_body = True
        while more_body:
            message = await receive()
            if chunk := message.get("body", b""):
                chunks.append(chunk)
            more_body = message.get("more_body", False)
        environ = build_environ(scope, b"".join(chunks))
        del chunks
        queue: asyncio.Queue[Any] = asyncio.Queue()
        response = _Response(asyncio.get_running_loop(), queue)
        flask = asyncio.ensure_future(anyio.to_thread.run_sync(response.run, self.app, environ))
        try:
            while (message := await queue.get()) is not _END:
                await send(message)
                if message["type"] == "http.response.body":
                    response.sent(len(message["body"]))
        except BaseException:
            response.abandon()
            # A thread cannot be cancelled: it runs to its end, and what it raises then
            # is dropped (nobody waits for it), not logged as never retrieved.
            flask.add_done_callback(_retrieve)
            raise
        await flask  # Flask's own error, raised as Starlette's bridge raises it
        if response.started:
            await send({"type": "http.response.body", "body": b""})
        if response.exc_info is not None:
            raise response.exc_info[0].with_traceback(response.exc_info[1], response.exc_info[2])


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def install(app: Any) -> bool:
    """Serve the Flask app that ``app`` (MLflow's FastAPI app) mounts through
    :class:`FlaskBridge`; True when it was found under MLflow's bridge."""
    from starlette.routing import Mount

    for route in app.router.routes:
        if not isinstance(route, Mount) or route.app is not route._base_app:
            continue
        mlflow_bridge: Any = route.app
        if type(mlflow_bridge).__name__ != "_EfficientWSGIMiddleware":
            continue
        bridge: Any = FlaskBridge(mlflow_bridge.app)
        route.app = route._base_app = bridge
        return True
    return False
