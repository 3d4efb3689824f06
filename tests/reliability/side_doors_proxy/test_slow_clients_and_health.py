"""Slow clients and /health: a slow-header connection is closed, /health refuses a large
chunked body without spooling it, and what reaches MLflow carries the proxy's headers only.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import threading
import time

import pytest
import requests
from pydantic import SecretStr

from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.reliability.side_doors_proxy.support import BURST_MB, OTHER_USER, Recorder, StartProxy
from tests.support.http import SEARCH

pytestmark = pytest.mark.integration


# -- slow clients and /health ------------------------------------------------------------


def test_a_slow_header_connection_is_closed(platform: Platform, start_proxy: StartProxy) -> None:
    """A header trickled line by line (slowloris) is cut at MLOPS_PROXY_CLIENT_TIMEOUT."""
    timeout = 2
    proxy = start_proxy(proxy_client_timeout_seconds=timeout)
    port = proxy.settings.proxy_port
    # A deadline far above the timeout and below nginx's own default (60 s): without the
    # setting this connection would still be open when it passes.
    deadline = time.monotonic() + 15 * timeout
    lines = 0
    closed_by = ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + SEARCH.encode() + b" HTTP/1.1\r\nHost: localhost\r\n")
        while time.monotonic() < deadline and not closed_by:
            readable, _, _ = select.select([sock], [], [], 0.5)
            try:
                if readable:
                    data = sock.recv(4096)
                    closed_by = "close" if data == b"" else data.split(b"\r\n", 1)[0].decode()
                else:
                    sock.sendall(f"X-Slow-{lines}: a\r\n".encode())
                    lines += 1
            except (ConnectionResetError, BrokenPipeError):
                closed_by = "reset"
    assert closed_by in ("close", "reset", "HTTP/1.1 408 Request Time-out"), closed_by
    # The proxy itself is fine: a normal request right after gets its answer.
    after = proxy.client("127.0.1.12", platform.auth).get(proxy.url + SEARCH, timeout=30)
    assert after.status_code == 200
    print(f"\nSLOWLORIS: closed ({closed_by}) after {lines} header lines sent 0.5 s apart")


def test_health_refuses_a_100mb_chunked_body_and_spools_nothing(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    body_dir = proxy.root / "tmp" / "client_body"
    assert body_dir.is_dir()
    block = os.urandom(1 << 20)
    seen: set[str] = set()
    sent = [0]

    with socket.create_connection(("127.0.0.1", proxy.settings.proxy_port), timeout=60) as sock:

        def send_body() -> None:
            try:
                for _ in range(BURST_MB):
                    sock.sendall(b"100000\r\n" + block + b"\r\n")
                    sent[0] += 1
                    seen.update(os.listdir(body_dir))
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # refused: nginx closed the connection

        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sender = threading.Thread(target=send_body)
        sender.start()
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
        sender.join()
    status = head.split(b"\r\n", 1)[0].decode()
    assert status == "HTTP/1.1 413 Request Entity Too Large", status
    assert seen == set() and os.listdir(body_dir) == []
    assert "buffered to a temporary file" not in proxy.error_log()
    # A declared body is refused as well, before it is sent; a plain GET still works.
    declared = requests.get(
        proxy.url + "/health", headers={"Content-Length": str(BURST_MB << 20)}, timeout=30
    )
    assert declared.status_code == 413
    assert requests.get(proxy.url + "/health", timeout=30).status_code == 200
    print(f"\n/health BODY: 413, {sent[0]} of {BURST_MB} MiB accepted by the socket, 0 spooled")


def test_what_reaches_mlflow_identity_headers_are_the_proxys(start_proxy: StartProxy) -> None:
    port = free_port()
    recorder = Recorder(port)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        secret = "s3cr3t-" + "x" * 40
        proxy = start_proxy(server_port=port, proxy_secret=SecretStr(secret), auth_enabled=True)
        forged = {
            "Authorization": "Basic " + base64.b64encode(b"admin:forged").decode(),
            "X-Forwarded-User": "admin",
            "X-Mlops-Proxy-Secret": "forged",
            "Cookie": "session=abc",
        }
        assert requests.get(proxy.url + "/health", headers=forged, timeout=30).status_code == 200
        user = proxy.client("127.0.1.10", OTHER_USER)
        headers = {k: v for k, v in forged.items() if k != "Authorization"}
        assert user.get(proxy.url + "/api/2.0/x", headers=headers, timeout=30).status_code == 200
    finally:
        recorder.shutdown()
        recorder.server_close()
    (health_path, health), (api_path, api) = recorder.seen
    assert health_path == "/health"
    assert set(health) <= {"host", "connection"}, health  # nothing of the client's
    assert api_path == "/api/2.0/x"
    assert "authorization" not in api
    assert api["x-forwarded-user"] == OTHER_USER[0]
    assert api["x-mlops-proxy-secret"] == secret
