"""Access control through the real proxy: crafted requests without valid credentials.

Every one is refused, and none reaches the tracking server: its access log has no new
line while they are sent. Requests go over raw sockets so that malformed request lines,
headers and encodings reach nginx exactly as written.
"""

from __future__ import annotations

import base64
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration

FAMILIES = [
    "/",
    "/api/2.0/mlflow/experiments/search?max_results=1",
    "/ajax-api/2.0/mlflow/experiments/search?max_results=1",
    "/api/2.0/mlflow-artifacts/artifacts",
    "/api/2.0/mlflow/registered-models/search",
    "/static-files/index.html",
    "/graphql",
    "/metrics",
    "/version",
]
# `/health` is deliberately open (a bare "OK" for load balancers): test_proxy.py checks it.
# The crafted requests come from their own loopback address, so that the failed-login
# lockout they trigger does not reach the other tests' clients on 127.0.0.1.
SOURCE = "127.0.0.11"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def raw_request(port: int, data: bytes, timeout: float = 10) -> int:
    """Send ``data`` as is; return the status code (0 if the proxy closed without one)."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(SOURCE, 0)
    ) as sock:
        sock.sendall(data)
        chunks = b""
        try:
            while b"\r\n" not in chunks:
                part = sock.recv(4096)
                if not part:
                    break
                chunks += part
        except (TimeoutError, ConnectionResetError):
            pass
    line = chunks.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0


def build(
    method: str,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "surrogateescape") + body


def crafted(host: str, user: str) -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    for path in FAMILIES:
        for method in METHODS:
            cases.append((f"{method} {path}", build(method, path, host)))
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    for path in [
        "/..%2fapi/2.0/mlflow/experiments/search",
        "/%2e%2e/api/2.0/mlflow/experiments/search",
        "//api/2.0/mlflow/experiments/search",
        "/api/2.0/mlflow/../mlflow/experiments/search",
        "/%2561pi/2.0/mlflow/experiments/search",
        "/-/proxy-health/../api/2.0/mlflow/experiments/search",
        "/-/proxy-health%2f..%2fapi/2.0/mlflow/experiments/search",
        "/-/proxy-health/%2e%2e/api/2.0/mlflow/experiments/search",
        "/.env",
        "/.git/config",
        "/api/2.0/mlflow/experiments/search%00",
        "/api/2.0/mlflow/experiments/search;.css",
    ]:
        cases.append((f"encoded {path}", build("GET", path, host)))
    cases += [
        ("absolute-URI", build("GET", f"http://evil.example{search}", host)),
        ("absolute-URI health host", build("GET", f"http://{host}{search}", "evil.example")),
        ("empty Host", build("GET", search, "")),
        ("odd Host", build("GET", search, "evil.example:1234")),
        ("huge Host", build("GET", search, "h" * 6000)),
        ("unicode Host", build("GET", search, "ex\udce4mple")),
        ("X-Forwarded-For spoof", build("GET", search, host, {"X-Forwarded-For": "127.0.0.1"})),
        ("X-Real-IP spoof", build("GET", search, host, {"X-Real-IP": "10.0.0.1"})),
        ("X-Forwarded-User spoof", build("GET", search, host, {"X-Forwarded-User": user})),
        ("Authorization empty", build("GET", search, host, {"Authorization": ""})),
        ("Basic empty", build("GET", search, host, {"Authorization": "Basic "})),
        ("Basic not base64", build("GET", search, host, {"Authorization": "Basic !!!"})),
        (
            "Basic no colon",
            build("GET", search, host, {"Authorization": "Basic " + b64(user.encode())}),
        ),
        (
            "Basic empty password",
            build("GET", search, host, {"Authorization": "Basic " + b64(f"{user}:".encode())}),
        ),
        (
            "Basic wrong password",
            build("GET", search, host, {"Authorization": "Basic " + b64(f"{user}:guess".encode())}),
        ),
        (
            "Basic unknown user",
            build("GET", search, host, {"Authorization": "Basic " + b64(b"root:root")}),
        ),
        (
            "Basic non-UTF-8",
            build("GET", search, host, {"Authorization": "Basic " + b64(b"\xff\xfe:\xff")}),
        ),
        ("Basic huge", build("GET", search, host, {"Authorization": "Basic " + "A" * 12000})),
        ("Bearer scheme", build("GET", search, host, {"Authorization": "Bearer abc.def.ghi"})),
        ("Digest scheme", build("GET", search, host, {"Authorization": 'Digest username="admin"'})),
        (
            "two Authorization headers",
            build(
                "GET",
                search,
                host,
                {
                    "Authorization": "Basic " + b64(f"{user}:guess".encode()),
                    "authorization": "Basic " + b64(b"x:y"),
                },
            ),
        ),
        ("HTTP/1.0 no Host", build("GET", search, None, version="HTTP/1.0")),  # type: ignore[arg-type]
        ("HTTP/1.0 with Host", build("GET", search, host, version="HTTP/1.0")),
        ("TRACE", build("TRACE", "/", host)),
        ("CONNECT", build("CONNECT", "example.com:443", host)),
        ("unknown method", build("FOO", search, host)),
        (
            "POST with body",
            build(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                host,
                {"Content-Type": "application/json"},
                body=b'{"name":"x"}',
            ),
        ),
    ]
    return cases


def tracking_log_lines(platform: Platform) -> int:
    path = platform.settings.state_dir / "logs" / "tracking.log"
    return sum(
        1
        for line in path.read_text(errors="replace").splitlines()
        if '" ' in line and "HTTP/1.1" in line
    )


def test_no_crafted_request_gets_through(platform: Platform) -> None:
    port = urlsplit(platform.url).port
    assert port is not None
    host = urlsplit(platform.url).netloc
    cases = crafted(host, platform.user)
    assert len(cases) >= 60
    before = tracking_log_lines(platform)
    allowed_through = []
    for name, data in cases:
        status = raw_request(port, data)
        if not (status == 0 or 400 <= status < 500):
            allowed_through.append((name, status))
    time.sleep(1)
    after = tracking_log_lines(platform)
    assert allowed_through == [], allowed_through
    assert after == before, f"{after - before} crafted requests reached the tracking server"
    print(f"\nACCESS REPORT: {len(cases)} crafted requests, all refused, none reached MLflow")


def test_valid_credentials_behave_as_mlflow_directly(platform: Platform) -> None:
    direct = f"http://127.0.0.1:{platform.settings.server_port}"
    direct_host = {"Host": f"localhost:{platform.settings.server_port}"}
    for path in [
        "/api/2.0/mlflow/experiments/search?max_results=5",
        "/ajax-api/2.0/mlflow/experiments/search?max_results=5",
        "/api/2.0/mlflow/registered-models/search",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        "/api/2.0/mlflow/experiments/get?experiment_id=999999",
        "/version",
    ]:
        via_proxy = requests.get(platform.url + path, auth=platform.auth, timeout=10)
        straight = requests.get(direct + path, headers=direct_host, timeout=10)
        assert via_proxy.status_code == straight.status_code, path
        assert via_proxy.content == straight.content, path
