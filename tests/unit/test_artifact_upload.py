"""The pipe between a request body and boto3's managed upload, and the server-info rule."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from mlops_platform import artifact_upload, proxied_artifacts
from mlops_platform.artifact_upload import BLOCK_BYTES, PIPE_BLOCKS, BodyPipe


async def _feed(pipe: BodyPipe, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await pipe.feed(chunk)
    await pipe.finish()


def _read_all(pipe: BodyPipe, size: int) -> list[bytes]:
    pieces = []
    while piece := pipe.read(size):
        pieces.append(piece)
    return pieces


def test_reads_give_exactly_what_is_asked_until_the_end() -> None:
    body = bytes(range(256)) * 20_000  # ~5 MB in uneven request chunks
    chunks = [body[i : i + 65_531] for i in range(0, len(body), 65_531)]
    pipe = BodyPipe()
    got: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: got.append(_read_all(pipe, 3_000_001)))
    reader.start()
    asyncio.run(_feed(pipe, chunks))
    reader.join(10)
    assert [len(p) for p in got[0]] == [3_000_001, len(body) - 3_000_001]
    assert b"".join(got[0]) == body


def test_read_without_a_size_returns_the_rest() -> None:
    pipe = BodyPipe()
    asyncio.run(_feed(pipe, [b"abc", b"defgh"]))
    assert pipe.read(2) == b"ab"
    assert pipe.read() == b"cdefgh"
    assert pipe.read(5) == b""


def test_an_empty_body_is_an_empty_read() -> None:
    pipe = BodyPipe()
    asyncio.run(_feed(pipe, []))
    assert pipe.read(10) == b""


def test_a_failed_body_raises_in_the_reader_after_what_arrived() -> None:
    pipe = BodyPipe()

    async def cut() -> None:
        await pipe.feed(b"x" * (BLOCK_BYTES + 10))  # one whole block goes in
        await pipe.fail(artifact_upload.UploadCut("gone"))

    asyncio.run(cut())
    assert pipe.read(BLOCK_BYTES) == b"x" * BLOCK_BYTES
    with pytest.raises(artifact_upload.UploadCut):
        pipe.read(BLOCK_BYTES)


def test_the_pipe_is_bounded_and_a_gone_reader_frees_the_feeder() -> None:
    """The feeder waits once PIPE_BLOCKS blocks are held; when the reader stops (the
    upload failed), the waiting feeder returns instead of hanging."""
    pipe = BodyPipe()
    fed: list[int] = []

    async def feed() -> None:
        for i in range(PIPE_BLOCKS + 3):
            await pipe.feed(b"z" * BLOCK_BYTES)
            fed.append(i)

    def stop_later() -> None:
        import time

        time.sleep(0.5)
        pipe.close()

    stopper = threading.Thread(target=stop_later)
    stopper.start()
    asyncio.run(asyncio.wait_for(feed(), 10))
    stopper.join()
    assert pipe._blocks.qsize() == PIPE_BLOCKS  # never more held than the bound
    assert len(fed) == PIPE_BLOCKS + 3


class Repo:
    def __init__(self, owner: dict[str, str], environ: dict[str, str] | None) -> None:
        self._bucket_owner_params = owner
        self._environ = environ

    def get_s3_file_upload_extra_args(self) -> dict[str, str] | None:
        return self._environ


@pytest.mark.parametrize(
    ("name", "owner", "environ", "expected"),
    [
        ("m.json", {}, None, {"ContentType": "application/json"}),
        ("data.csv.gz", {}, None, {"ContentType": "text/csv", "ContentEncoding": "gzip"}),
        ("weights", {}, None, {}),
        (
            "m.bin",
            {"ExpectedBucketOwner": "123"},
            {"ServerSideEncryption": "AES256", "ContentType": "x/y"},
            {"ContentType": "x/y", "ExpectedBucketOwner": "123", "ServerSideEncryption": "AES256"},
        ),
    ],
)
def test_upload_args_are_mlflows(
    name: str, owner: dict[str, str], environ: dict[str, str] | None, expected: dict[str, Any]
) -> None:
    """As MLflow's S3 repository builds them: guessed type and encoding, the bucket owner,
    then the environment's arguments over all of it."""
    assert artifact_upload.upload_args(Repo(owner, environ), name) == expected


def test_server_info_keeps_mlflows_payload_with_store_urls_off() -> None:
    payload = {
        "store_type": "SqlStore",
        "multipart_uploads_enabled": True,
        "multipart_downloads_enabled": True,
        "presigned_upload_run_id_supported": True,
    }
    assert proxied_artifacts.proxied_server_info(payload) == {
        **payload,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
    }
    assert payload["multipart_uploads_enabled"] is True  # MLflow's dict is not changed


def test_waiting_feeders_hold_no_pool_thread() -> None:
    """More uploads than the loop's pool has threads, each reader in a pool thread: a full
    pipe's feeder waits on the event loop, not in the pool, so every upload finishes (a
    feeder waiting in the pool deadlocked here: the readers held every thread)."""
    from concurrent.futures import ThreadPoolExecutor

    def drain(pipe: BodyPipe) -> int:
        total = 0
        try:
            while piece := pipe.read(8 * 1024 * 1024):
                total += len(piece)
        finally:
            pipe.close()
        return total

    async def one() -> int:
        pipe = BodyPipe()
        reading = asyncio.ensure_future(asyncio.to_thread(drain, pipe))
        for _ in range(24 * 16):
            await pipe.feed(b"x" * 65536)
        await pipe.finish()
        return await reading

    async def many() -> list[int]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        return list(await asyncio.gather(*(one() for _ in range(10))))

    results: list[list[int]] = []
    runner = threading.Thread(target=lambda: results.append(asyncio.run(many())), daemon=True)
    runner.start()
    runner.join(60)
    assert results == [[24 * 1024 * 1024] * 10], "the uploads did not finish: a deadlock"


def _s3(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(signature_version="s3v4"),  # as MLflow's repository builds it
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret",
    )


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("endpoint", "extra", "length", "single"),
    [
        ("http://127.0.0.1:8333", {"ContentType": "application/json"}, 48 * MB, True),
        (
            "http://127.0.0.1:8333",
            {"ContentType": "text/csv", "ContentEncoding": "gzip"},
            8 * MB,
            True,
        ),  # fmt: skip
        ("http://127.0.0.1:8333", {}, 5 * 1024 * MB, True),  # S3's most for one PUT
        ("http://127.0.0.1:8333", {}, 5 * 1024 * MB + 1, False),
        ("http://127.0.0.1:8333", {}, 8 * MB - 1, False),  # under one part: boto3's PutObject
        ("http://127.0.0.1:8333", {}, None, False),  # sent in chunks: no length
        ("http://127.0.0.1:8333", {"ServerSideEncryption": "AES256"}, 48 * MB, False),
        ("http://127.0.0.1:8333", {"ExpectedBucketOwner": "123"}, 48 * MB, False),
        ("https://s3.example.com", {}, 48 * MB, False),
    ],
)
def test_which_uploads_go_to_the_store_in_one_put(
    endpoint: str, extra: dict[str, str], length: int | None, single: bool
) -> None:
    """One presigned PUT for a body of known length (a part to 5 GiB) with at most a type
    and an encoding, to a plain-HTTP store; boto3's managed upload for the rest."""
    url = artifact_upload.single_put_url(_s3(endpoint), "b", "k/m.bin", extra, length)
    assert (url is not None) == single
    if url is not None:
        from urllib.parse import parse_qs, urlsplit

        signed = parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
        headers = {artifact_upload.PLAIN_HEADERS[arg].lower() for arg in extra}
        assert set(signed) == {"host", *headers}


def _store(answer: bytes) -> tuple[str, list[bytes], threading.Thread]:
    """A one-request HTTP server on loopback that reads what it is sent (until the client
    stops) and answers ANSWER; (its URL, what it got, its thread)."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                piece = conn.recv(65536)
                if not piece:
                    break
                body += piece
            got.extend([head, body])
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/b/k?X-Amz-Signature=s", got, thread


def _piped(body: bytes, cut: bool = False) -> BodyPipe:
    pipe = BodyPipe()

    async def feed() -> None:
        for i in range(0, len(body), 65_536):
            await pipe.feed(body[i : i + 65_536])
        if cut:
            await pipe.fail(artifact_upload.UploadCut("gone"))
        else:
            await pipe.finish()

    threading.Thread(target=lambda: asyncio.run(feed()), daemon=True).start()
    return pipe


def test_a_single_put_sends_the_body_and_its_headers() -> None:
    body = os.urandom(3 * BLOCK_BYTES + 5)
    url, got, thread = _store(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    extra = {"ContentType": "text/csv", "ContentEncoding": "gzip"}
    artifact_upload._put_whole(url, _piped(body), len(body), extra)
    thread.join(5)
    head, sent = got
    assert head.startswith(b"PUT /b/k?X-Amz-Signature=s HTTP/1.1\r\n")
    lines = head.lower().split(b"\r\n")
    assert b"content-type: text/csv" in lines and b"content-encoding: gzip" in lines
    assert b"host: " + url.split("/")[2].encode() in lines
    assert sent == body


def test_a_single_put_the_store_refuses_raises_its_answer() -> None:
    body = os.urandom(BLOCK_BYTES)
    said = b"<Error><Code>AccessDenied</Code></Error>"
    url, _got, thread = _store(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(said), said)
    )
    with pytest.raises(artifact_upload.StoreRefused, match="403.*AccessDenied"):
        artifact_upload._put_whole(url, _piped(body), len(body), {})
    thread.join(5)


def test_a_cut_body_stops_the_single_put_short() -> None:
    """The request body cut off: the pipe's error is raised and the store gets fewer bytes
    than announced (so it keeps nothing)."""
    body = os.urandom(2 * BLOCK_BYTES)
    url, got, thread = _store(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(artifact_upload.UploadCut):
        artifact_upload._put_whole(url, _piped(body, cut=True), 4 * BLOCK_BYTES, {})
    thread.join(5)
    assert len(got[1]) < 4 * BLOCK_BYTES
