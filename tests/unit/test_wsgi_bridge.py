"""The kit's bridge to Flask sends what MLflow's bridge sends, without waiting on the loop.

Each case drives a Flask app (or a bare WSGI app) through MLflow's
``_EfficientWSGIMiddleware`` and through :class:`FlaskBridge` with the same ASGI
messages and compares what each sends; the cases only the kit's bridge has (the
response's ``close()``, a body sent as it is produced) are checked on their own. The
tracking server runs on the kit's bridge in every integration test.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request

from mlops_platform.wsgi_bridge import MAX_UNSENT, FlaskBridge, install
from tests.support.asgi import http_scope

with warnings.catch_warnings():  # MLflow's bridge imports Starlette's deprecated module
    warnings.filterwarnings("ignore", "starlette.middleware.wsgi is deprecated")
    from mlflow.server.fastapi_app import _EfficientWSGIMiddleware

Message = dict[str, Any]


def _flask() -> Flask:
    app = Flask("bridged")

    @app.get("/json")
    def json_view() -> Response:
        return Response('{\n  "a": 1\n}', mimetype="application/json", headers={"X-One": "1"})

    @app.post("/echo")
    def echo() -> Response:
        return Response(request.get_data()[::-1], status=201)

    @app.get("/pieces")
    def pieces() -> Response:
        return Response((f"piece {i}\n" for i in range(3)), mimetype="text/plain")

    @app.get("/empty")
    def empty() -> Response:
        return Response(status=204)

    @app.get("/fails")
    def fails() -> Response:
        raise ValueError("a view that fails")

    return app


def _drive(
    app: Any, scope: Message, body: list[bytes], on_send: Any = None
) -> tuple[list[Message], BaseException | None]:
    """Run ``app`` once: the request body in ``body``'s pieces; (what it sent, its error)."""
    incoming = [
        {"type": "http.request", "body": piece, "more_body": i < len(body) - 1}
        for i, piece in enumerate(body or [b""])
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if on_send is not None:
            on_send(message)

    try:
        asyncio.run(app(scope, receive, send))
    except Exception as error:  # noqa: BLE001 - compared between the two bridges
        return sent, error
    return sent, None


def _both(app: Any, scope: Message, body: list[bytes] | None = None) -> list[Message]:
    theirs, their_error = _drive(_EfficientWSGIMiddleware(app), scope, body or [])
    ours, our_error = _drive(FlaskBridge(app), scope, body or [])
    assert ours == theirs
    # MLflow's task group wraps Flask's error in a group; the kit's raises it bare
    assert repr(our_error) == repr(_leaf(their_error))
    return ours


def _leaf(error: BaseException | None) -> BaseException | None:
    grouped = getattr(error, "exceptions", None)  # an exception group (3.10: the backport's)
    return _leaf(grouped[0]) if grouped and len(grouped) == 1 else error


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/json", []),
        ("HEAD", "/json", []),
        ("POST", "/echo", [b"abc", b"def"]),
        ("GET", "/pieces", []),
        ("GET", "/empty", []),
        ("GET", "/fails", []),
        ("GET", "/missing", []),
        ("DELETE", "/json", []),
    ],
)
def test_flask_answers_as_through_mlflows_bridge(method: str, path: str, body: list[bytes]) -> None:
    sent = _both(_flask(), http_scope(path, method), body)
    assert sent[0]["type"] == "http.response.start"
    assert sent[-1] == {"type": "http.response.body", "body": b""}


def test_the_request_body_and_the_pieces_arrive_whole() -> None:
    scope = http_scope("/echo", "POST", [(b"content-length", b"6")])
    sent = _both(_flask(), scope, [b"abc", b"def"])
    assert sent[0]["status"] == 201
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"fedcba"
    pieces = _both(_flask(), http_scope("/pieces", "GET"))
    assert [m["body"] for m in pieces[1:-1]] == [b"piece 0\n", b"piece 1\n", b"piece 2\n"]


def test_a_wsgi_error_is_raised_as_mlflows_bridge_raises_it() -> None:
    def before_start(environ: Message, start_response: Any) -> list[bytes]:
        raise RuntimeError("no response")

    def with_exc_info(environ: Message, start_response: Any) -> list[bytes]:
        try:
            raise KeyError("told to start_response")
        except KeyError as error:
            start_response("500 Internal Server Error", [], (type(error), error, None))
        return [b"x"]

    assert _both(before_start, http_scope("/", "GET")) == []
    sent = _both(with_exc_info, http_scope("/", "GET"))
    assert sent[0]["status"] == 500


def test_other_scopes_are_refused_or_ignored() -> None:
    websocket = {**http_scope("/ws", "GET"), "type": "websocket"}
    assert _both(_flask(), websocket) == [{"type": "websocket.close", "code": 1000}]
    assert _both(_flask(), {"type": "lifespan"}) == []


def test_the_response_is_closed_once_sent() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"one"

        def close(self) -> None:
            closed.append(True)

    def app(environ: Message, start_response: Any) -> Body:
        start_response("200 OK", [("Content-Length", "3")])
        return Body()

    sent, error = _drive(FlaskBridge(app), http_scope("/", "GET"), [])
    assert error is None
    assert closed == [True]
    assert [m.get("body") for m in sent[1:]] == [b"one", b""]


def test_a_piece_goes_out_before_flask_makes_the_next() -> None:
    """The bridge sends each piece as Flask yields it: the view waits for the client to
    have the first piece before it yields the second."""
    first_sent = threading.Event()
    waited: list[bool] = []

    def app(environ: Message, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        waited.append(first_sent.wait(10))
        yield b"second"

    def on_send(message: Message) -> None:
        if message.get("body") == b"first":
            first_sent.set()

    sent, error = _drive(FlaskBridge(app), http_scope("/", "GET"), [], on_send)
    assert error is None
    assert waited == [True]
    assert [m.get("body") for m in sent[1:]] == [b"first", b"second", b""]


def test_install_replaces_mlflows_bridge_only() -> None:
    from fastapi import FastAPI

    flask_app = _flask()
    app = FastAPI()
    app.mount("/", _EfficientWSGIMiddleware(flask_app))
    assert install(app)
    mount = app.router.routes[-1]
    assert isinstance(mount.app, FlaskBridge)  # type: ignore[attr-defined]
    assert mount.app.app is flask_app  # type: ignore[attr-defined]
    assert not install(app)  # nothing of MLflow's left to replace


def test_the_benchmark_serves_the_same_answer_through_both_bridges() -> None:
    """`python -m benchmarks.wsgi_bridge` runs a real uvicorn on each bridge; it stops
    with an error if either answers other bytes than the view wrote."""
    from benchmarks import wsgi_bridge as bench

    result = bench.main(["--requests", "20", "--rounds", "1", "--file-mb", "2"])
    assert set(result) == {"mlflow", "kit"}
    assert all(r["p50_ms"] > 0 for r in result.values())


def _counted_pieces(produced: list[int], closed: threading.Event, pieces: int) -> Any:
    """A WSGI app streaming PIECES pieces of 64 KB, counting them as Flask would make them."""

    def app(environ: Message, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            for _ in range(pieces):
                produced.append(1)
                yield b"x" * 65536
        finally:
            closed.set()

    return app


def _ahead_of_a_stalled_client(bridge: Any) -> tuple[int, bytes]:
    """Pieces the app had made when the client, stalled half a second after the first
    piece, took the next; and the whole body it got."""
    produced: list[int] = []
    app = _counted_pieces(produced, threading.Event(), 100)
    sent: list[Message] = []
    ahead: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 2:  # the first piece: the client stalls
            await asyncio.sleep(0.5)
            ahead.append(len(produced))

    asyncio.run(bridge(app)(http_scope("/", "GET"), receive, send))
    return ahead[0], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_slow_client_holds_the_thread_at_most_a_mebibyte_ahead() -> None:
    """MLflow's bridge reads all 6.4 MB ahead of a stalled client, the kit's stops
    MAX_UNSENT ahead; then every piece arrives, in order."""
    theirs, their_body = _ahead_of_a_stalled_client(_EfficientWSGIMiddleware)
    ours, our_body = _ahead_of_a_stalled_client(FlaskBridge)
    assert our_body == their_body == b"x" * 65536 * 100
    assert theirs == 100
    assert ours <= MAX_UNSENT // 65536 + 2


def test_a_response_nobody_sends_any_more_stops_and_is_closed() -> None:
    produced: list[int] = []
    closed = threading.Event()
    app = _counted_pieces(produced, closed, 10_000)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message.get("body"):
            raise OSError("the client went away")

    with pytest.raises(OSError):
        asyncio.run(FlaskBridge(app)(http_scope("/", "GET"), receive, send))
    assert closed.wait(10)
    assert len(produced) < 10_000
