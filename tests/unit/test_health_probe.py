"""The stack's health probe (`stack.tracking.http_ok`) over real loopback sockets.

A probe of a port in the ephemeral range that nothing listens on yet can be given that same
port as its source port and connect to itself; it then reads its own request back as the
answer (`BadStatusLine: GET /health HTTP/1.1`, a traceback out of `restart` in a test run)
and, while connected, holds the port the service is about to bind.
"""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from mlops_platform.stack.tracking import http_ok


def _serve_once(reply: bytes) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_an_answer_that_is_not_http_is_not_healthy_and_raises_nothing() -> None:
    port, thread = _serve_once(b"GET /health HTTP/1.1\r\n\r\n")
    assert http_ok(f"http://127.0.0.1:{port}/health") is False
    thread.join(5)


def test_a_2xx_answer_is_healthy() -> None:
    port, thread = _serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert http_ok(f"http://127.0.0.1:{port}/health") is True
    thread.join(5)


class _Recording:
    """A real socket that records what is sent on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_a_socket_connected_to_itself_is_closed_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.connect(("127.0.0.1", port))  # TCP's simultaneous open with itself
    assert sock.getsockname() == sock.getpeername()
    recording = _Recording(sock)
    monkeypatch.setattr(http.client.socket, "create_connection", lambda *a, **k: recording)

    assert http_ok(f"http://127.0.0.1:{port}/health") is False
    assert recording.sent == []
    assert sock.fileno() == -1  # closed: the port is free for the service again
