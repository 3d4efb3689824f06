"""Streamed artifact downloads: the pieces that need no running server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from typing import Any

import pytest

from mlops_platform import artifact_clients, artifact_stream
from mlops_platform.mlflow_server import rewrite


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", "bytes=0-99"),
        ("bytes=100-", "bytes=100-"),
        ("bytes=-5", "bytes=-5"),
        (" bytes = 3 - 4 ", "bytes=3-4"),
        ("bytes=0-1,5-6", None),  # several ranges: the whole object
        ("bytes=9-1", None),
        ("bytes=-", None),
        ("items=0-1", None),
        ("", None),
        (None, None),
    ],
)
def test_only_one_plain_range_is_passed_on(header: str | None, expected: str | None) -> None:
    assert artifact_stream.s3_range(header) == expected


def test_the_uvicorn_command_gets_the_kits_runner_and_app() -> None:
    from mlflow.server import _build_uvicorn_command

    plain = _build_uvicorn_command(None, "127.0.0.1", 5000, 2, "mlflow.server.fastapi_app:app")
    cmd = rewrite(plain)
    assert cmd[:3] == [sys.executable, "-m", "mlops_platform.uvicorn_nodelay"]
    assert cmd[-2:] == ["--factory", "mlops_platform.artifact_stream:create_default_app"]
    auth = _build_uvicorn_command(
        None, "127.0.0.1", 5000, 2, "mlops_platform.auth_app:create_app", is_factory=True
    )
    cmd = rewrite(auth, nodelay=False)
    assert cmd[:3] == [sys.executable, "-m", "uvicorn"]
    assert cmd[-1] == "mlops_platform.artifact_stream:create_auth_app"
    assert cmd.count("--factory") == 1
    # an app the kit does not know is left alone
    other = [*plain[:-1], "someone.else:app"]
    assert rewrite(other, nodelay=False) == other


def test_both_download_routes_get_the_streamed_view() -> None:
    from starlette.routing import Match

    app = artifact_stream.create_default_app()
    for prefix in ("/api", "/ajax-api"):
        path = f"{prefix}/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.bin"
        for method, streamed in (("GET", True), ("PUT", False)):
            scope = {"type": "http", "path": path, "method": method, "root_path": ""}
            first = next(r for r in app.router.routes if r.matches(scope)[0] == Match.FULL)
            is_ours = getattr(first, "endpoint", None) is artifact_stream.download_artifact
            assert is_ours is streamed, (method, path)


def test_mlflows_flask_app_is_served_through_the_kits_bridge() -> None:
    from mlflow.server import app as flask_app
    from starlette.routing import Mount

    from mlops_platform.wsgi_bridge import FlaskBridge

    app = artifact_stream.create_default_app()
    bridges = [r.app for r in app.router.routes if isinstance(r, Mount)]
    assert [type(b) for b in bridges] == [FlaskBridge]
    assert bridges[0].app is flask_app


class EndlessBody:
    """An S3 body that never ends: what was read, how, and whether it was closed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.closed = threading.Event()

    def read(self, size: int) -> bytes:
        self.sizes.append(size)
        return b"x" * size

    def close(self) -> None:
        self.closed.set()


def test_the_reader_sends_a_small_first_piece_and_holds_a_bounded_number() -> None:
    body = EndlessBody()

    async def scenario() -> list[int]:
        reader = artifact_stream.ReadAhead(body, asyncio.get_running_loop()).start()
        pieces = reader.pieces()
        got = [len(await anext(pieces)), len(await anext(pieces))]
        await asyncio.sleep(0.3)  # the thread reads ahead as far as it may, then waits
        held = len(body.sizes) - len(got)
        assert held <= artifact_stream.AHEAD, body.sizes
        await pieces.aclose()
        return got

    first, second = asyncio.run(scenario())
    assert (first, second) == (artifact_stream.FIRST_PIECE_BYTES, artifact_stream.PIECE_BYTES)
    assert body.closed.wait(5)


def test_the_reader_thread_ends_when_the_client_goes_away() -> None:
    """A client that disconnects after the first piece: the thread stops and the body (its
    connection to the store) is closed, while the store would have sent forever."""
    body = EndlessBody()

    async def scenario() -> None:
        reader = artifact_stream.ReadAhead(body, asyncio.get_running_loop()).start()
        response = artifact_stream.ReadAheadResponse(reader, status_code=200)
        sent: list[dict[str, Any]] = []
        gone = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body":
                gone.set()  # the client hangs up after the first piece
                await asyncio.sleep(0.05)

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}
        await asyncio.wait_for(response(scope, receive, send), 10)
        assert any(m.get("body") for m in sent)
        # while the server runs on (the response object still alive): the thread is done
        await asyncio.to_thread(reader.thread.join, 5)
        assert not reader.thread.is_alive()
        assert body.closed.is_set()

    asyncio.run(scenario())


def test_a_read_error_reaches_the_response() -> None:
    class Broken(EndlessBody):
        def read(self, size: int) -> bytes:
            if self.sizes:
                raise OSError("connection reset by the store")
            return super().read(size)

    body = Broken()

    async def scenario() -> None:
        reader = artifact_stream.ReadAhead(body, asyncio.get_running_loop()).start()
        pieces = reader.pieces()
        assert await anext(pieces)
        with pytest.raises(OSError, match="reset"):
            await anext(pieces)

    asyncio.run(scenario())
    assert body.closed.wait(5)


class Repo:
    """Stands for MLflow's S3ArtifactRepository: counts the clients it builds."""

    def __init__(self) -> None:
        self.built = 0
        self.slow = threading.Event()

    def _get_s3_client(self) -> object:
        self.built += 1
        if self.built > 1:
            self.slow.wait(5)  # a renewal takes its time; requests must not wait for it
        return f"client-{self.built}"


def test_the_s3_client_is_built_once_and_renewed_off_the_request_path() -> None:
    repo = Repo()
    keeper = artifact_clients.ClientKeeper(renew_seconds=3600)
    keeper.warm(repo)
    assert [keeper.get(repo) for _ in range(5)] == ["client-1"] * 5
    assert repo.built == 1

    keeper.renew_seconds = 0.0  # now stale: the next request still gets the current one
    assert keeper.get(repo) == "client-1"
    assert keeper.get(repo) == "client-1"  # one renewal at a time
    repo.slow.set()
    deadline = time.monotonic() + 5
    keeper.renew_seconds = 3600
    while keeper.get(repo) != "client-2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keeper.get(repo) == "client-2"
    assert repo.built == 2


def test_without_a_warm_client_a_request_builds_one_itself() -> None:
    """A worker whose start-up could not build the client (or a second repository):
    the request builds it, once, through the repository it asks for."""
    keeper = artifact_clients.ClientKeeper(renew_seconds=3600)
    first, second = Repo(), Repo()
    assert keeper.get(first) == "client-1"
    assert keeper.get(first) == "client-1"
    assert keeper.get(second) == "client-1"  # the other repository's own first client
    assert (first.built, second.built) == (1, 1)


def test_the_worker_builds_its_client_when_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    warmed: list[bool] = []
    monkeypatch.setattr(artifact_stream, "warm_client", lambda: warmed.append(True) or True)

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> Any:
        assert warmed, "the client is built before the app's own start-up"
        yield None

    async def scenario() -> None:
        async with artifact_stream._warming(lifespan)(object()):
            pass

    asyncio.run(scenario())
    assert warmed == [True]


def test_nginx_gets_a_location_only_for_urls_signed_for_its_store() -> None:
    """A presigned URL from a path-style client becomes nginx's internal location (path and
    signature kept); one from a client addressing the bucket by host name does not (nginx's
    store upstream answers for the endpoint's host only), and the server streams instead."""
    import boto3
    from botocore.config import Config

    from mlops_platform import artifact_handover as handover

    endpoint = "http://store.example:8333"

    def presigned(addressing: str) -> str:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
            config=Config(signature_version="s3v4", s3={"addressing_style": addressing}),
        )
        return str(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": "mlflow", "Key": "1/r/a b.txt"}, ExpiresIn=60
            )
        )

    path_style = presigned("path")
    location = handover.store_location(path_style, endpoint)
    assert location.startswith(f"{handover.STORE_LOCATION}/mlflow/1/r/a%20b.txt?")
    assert location.split("?", 1)[1] == path_style.split("?", 1)[1]
    assert "X-Amz-Signature=" in location
    virtual = presigned("virtual")
    assert virtual.startswith("http://mlflow.store.example:8333/")
    assert handover.store_location(virtual, endpoint) == ""
