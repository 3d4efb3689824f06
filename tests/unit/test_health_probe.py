"""The stack's health probe (`stack.tracking.http_ok`) over real loopback sockets, and the
choice of internal ports outside the kernel's ephemeral range (`stack.ports`).

A probe of a port in the ephemeral range that nothing listens on yet can be given that same
port as its source port and connect to itself; it then reads its own request back as the
answer (`BadStatusLine: GET /health HTTP/1.1`, a traceback out of `restart` in a test run)
and, while connected, holds the port the service is about to bind.
"""

from __future__ import annotations

import http.client
import socket
import threading
from pathlib import Path

import pytest

from mlops_platform.errors import PortInUseError
from mlops_platform.stack.ports import ephemeral_range, pick_free_port, port_free
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


def test_the_kernels_ephemeral_range_is_read_and_defaulted(tmp_path: Path) -> None:
    custom = tmp_path / "range"
    custom.write_text("40000\t50000\n")
    assert ephemeral_range(str(custom)) == (40000, 50000)
    assert ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)
    custom.write_text("garbage\n")
    assert ephemeral_range(str(custom)) == (32768, 60999)


def test_internal_ports_are_picked_below_the_ephemeral_range() -> None:
    """So that no outgoing connection, a probe of the port included, can have them as its
    source port. Run on this machine's real range, with the gRPC neighbour weed needs."""
    low, _ = ephemeral_range()
    for _ in range(50):
        port = pick_free_port(set(), with_offset=10000)
        assert port + 10000 < low
        assert port_free(port) and port_free(port + 10000)
        assert pick_free_port(set()) < low


def test_a_port_in_use_or_avoided_is_never_picked() -> None:
    busy = pick_free_port(set())
    free = pick_free_port({busy})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen(1)
        # Every candidate avoided but one in use and one free: the free one, every time.
        avoid = set(range(1024, 65536)) - {busy, free}
        assert {pick_free_port(avoid) for _ in range(5)} == {free}
        with pytest.raises(PortInUseError, match="no free loopback port"):
            pick_free_port(avoid | {free})
