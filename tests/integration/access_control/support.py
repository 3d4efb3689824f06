"""The crafted cases, sent over raw sockets from fresh loopback addresses, and the check
that none is let through or reaches the tracking server's access log.
"""

from __future__ import annotations

import base64
import itertools
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.integration.conftest import Platform

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
# `/health` is deliberately open (a bare "OK" for load balancers): proxy/test_routes.py checks it.
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
TIMEOUT = 10.0

# One fresh loopback address per request, for the whole session: 127.77.0.1, 127.77.0.2, ...
# (other tests use 127.0.0.x). An address is never reused, so no lockout or rate limit
# left by an earlier request can decide a later one.
_ADDRESSES = (f"127.77.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def fresh_source() -> str:
    return next(_ADDRESSES)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expected: int  # the status the layer this case targets must answer


@dataclass(frozen=True)
class Outcome:
    case: Case
    source: str
    status: int | None  # None: the connection closed without a status line
    error: str = ""  # "timeout" or the socket error: always a failure

    @property
    def problem(self) -> str | None:
        if self.error:
            return f"{self.case.name}: {self.error} (expected {self.case.expected})"
        if self.status != self.case.expected:
            return f"{self.case.name}: got {self.status}, expected {self.case.expected}"
        return None


def raw_request(port: int, data: bytes, source: str) -> tuple[int | None, str]:
    """Send ``data`` as is from ``source``; (status, "") or (None, "timeout"/error)."""
    chunks = b""
    try:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0)
        ) as sock:
            sock.sendall(data)
            while b"\r\n" not in chunks:
                part = sock.recv(4096)
                if not part:
                    break
                chunks += part
    except TimeoutError:
        return None, "timeout"
    except OSError as exc:
        if not chunks:
            return None, f"{exc.__class__.__name__}: {exc}"
    line = chunks.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1]), ""
    return None, "" if not chunks else f"no status line: {chunks[:80]!r}"


def build(
    method: str,
    path: str,
    host: str | None,
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


def auth(value: str) -> dict[str, str]:
    return {"Authorization": value}


def path_cases(host: str) -> list[Case]:
    """Every route family with every method, then encoded and traversing paths."""
    cases: list[Case] = []
    for path in FAMILIES:
        for method in METHODS:
            cases.append(Case(f"{method} {path}", build(method, path, host), 401))
    for path, expected in [
        ("/..%2fapi/2.0/mlflow/experiments/search", 400),
        ("/%2e%2e/api/2.0/mlflow/experiments/search", 400),
        ("//api/2.0/mlflow/experiments/search", 401),
        ("/api/2.0/mlflow/../mlflow/experiments/search", 400),
        ("/%2561pi/2.0/mlflow/experiments/search", 401),
        ("/-/proxy-health/../api/2.0/mlflow/experiments/search", 400),
        ("/-/proxy-health%2f..%2fapi/2.0/mlflow/experiments/search", 400),
        ("/-/proxy-health/%2e%2e/api/2.0/mlflow/experiments/search", 400),
        ("/.env", 404),
        ("/.git/config", 404),
        ("/api/2.0/mlflow/experiments/search%00", 400),
        ("/api/2.0/mlflow/experiments/search;.css", 401),
    ]:
        cases.append(Case(f"encoded {path}", build("GET", path, host), expected))
    return cases


def host_cases(host: str, user: str) -> list[Case]:
    """Request targets and Host headers nginx must not trust, spoofed client headers."""
    return [
        Case("absolute-URI", build("GET", f"http://evil.example{SEARCH}", host), 401),
        Case(
            "absolute-URI health host", build("GET", f"http://{host}{SEARCH}", "evil.example"), 401
        ),
        Case("empty Host", build("GET", SEARCH, ""), 400),
        Case("odd Host", build("GET", SEARCH, "evil.example:1234"), 401),
        Case("huge Host", build("GET", SEARCH, "h" * 6000), 401),
        Case("unicode Host", build("GET", SEARCH, "ex\udce4mple"), 401),
        Case(
            "X-Forwarded-For spoof",
            build("GET", SEARCH, host, {"X-Forwarded-For": "127.0.0.1"}),
            401,
        ),
        Case("X-Real-IP spoof", build("GET", SEARCH, host, {"X-Real-IP": "10.0.0.1"}), 401),
        Case("X-Forwarded-User spoof", build("GET", SEARCH, host, {"X-Forwarded-User": user}), 401),
    ]


def authorization_cases(host: str, user: str) -> list[Case]:
    """Authorization headers that are empty, malformed, wrong or of another scheme."""
    return [
        Case("Authorization empty", build("GET", SEARCH, host, auth("")), 401),
        Case("Basic empty", build("GET", SEARCH, host, auth("Basic ")), 401),
        Case("Basic not base64", build("GET", SEARCH, host, auth("Basic !!!")), 401),
        Case(
            "Basic no colon", build("GET", SEARCH, host, auth("Basic " + b64(user.encode()))), 401
        ),
        Case(
            "Basic empty password",
            build("GET", SEARCH, host, auth("Basic " + b64(f"{user}:".encode()))),
            401,
        ),
        Case(
            "Basic wrong password",
            build("GET", SEARCH, host, auth("Basic " + b64(f"{user}:guess".encode()))),
            401,
        ),
        Case(
            "Basic unknown user",
            build("GET", SEARCH, host, auth("Basic " + b64(b"root:root"))),
            401,
        ),
        Case(
            "Basic non-UTF-8",
            build("GET", SEARCH, host, auth("Basic " + b64(b"\xff\xfe:\xff"))),
            401,
        ),
        Case("Basic huge", build("GET", SEARCH, host, auth("Basic " + "A" * 12000)), 400),
        Case("Bearer scheme", build("GET", SEARCH, host, auth("Bearer abc.def.ghi")), 401),
        Case("Digest scheme", build("GET", SEARCH, host, auth('Digest username="admin"')), 401),
        Case(
            "two Authorization headers",
            build(
                "GET",
                SEARCH,
                host,
                {
                    "Authorization": "Basic " + b64(f"{user}:guess".encode()),
                    "authorization": "Basic " + b64(b"x:y"),
                },
            ),
            400,
        ),
    ]


def protocol_cases(host: str) -> list[Case]:
    """Old protocol versions, methods nginx refuses or does not know, a body."""
    return [
        Case("HTTP/1.0 no Host", build("GET", SEARCH, None, version="HTTP/1.0"), 401),
        Case("HTTP/1.0 with Host", build("GET", SEARCH, host, version="HTTP/1.0"), 401),
        Case("TRACE", build("TRACE", "/", host), 405),
        Case("CONNECT", build("CONNECT", "example.com:443", host), 400),
        Case("unknown method", build("FOO", SEARCH, host), 401),
        Case(
            "POST with body",
            build(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                host,
                {"Content-Type": "application/json"},
                body=b'{"name":"x"}',
            ),
            401,
        ),
    ]


def crafted(host: str, user: str) -> list[Case]:
    return [
        *path_cases(host),
        *host_cases(host, user),
        *authorization_cases(host, user),
        *protocol_cases(host),
    ]


# uvicorn's access line: `127.0.0.1:40000 - "GET /path HTTP/1.1" 200 OK`
REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/1\.[01]" \d{3}')


def logged_requests(log: Path, offset: int) -> list[str]:
    """The request lines the tracking server logged after byte ``offset`` of its log."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    return [f"{m.group(1)} {m.group(2)}" for m in REQUEST_LINE.finditer(text)]


@dataclass
class Report:
    outcomes: list[Outcome]
    reached_mlflow: list[str]  # request lines of crafted requests in the tracking log
    control_seen: bool  # the legitimate request appeared in the tracking log

    @property
    def problems(self) -> list[str]:
        found = [p for o in self.outcomes if (p := o.problem)]
        found += [f"reached the tracking server: {line}" for line in self.reached_mlflow]
        if not self.control_seen:
            found.append("the legitimate control request is not in the tracking log")
        return found


def check_proxy(platform: Platform, port: int) -> Report:
    """Every crafted case through the nginx on ``port``, then one legitimate request.

    The Host header is the session stack's public name (the one the tracking server
    accepts), whichever nginx listens on ``port``.
    """
    host = urlsplit(platform.url).netloc
    log = platform.settings.state_dir / "logs" / "tracking.log"
    offset = log.stat().st_size
    outcomes = []
    for case in crafted(host, platform.user):
        source = fresh_source()
        status, error = raw_request(port, case.data, source)
        outcomes.append(Outcome(case, source, status, error))

    # The positive control: a legitimate request must show up in the same log.
    marker = f"access-control-marker-{uuid.uuid4().hex}"
    control = requests.get(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": marker},
        headers={"Host": host},
        auth=platform.auth,
        timeout=TIMEOUT,
    )
    assert control.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in control.text, (
        control.status_code,
        control.text[:300],
    )
    deadline = time.monotonic() + 15
    while not (seen := any(marker in line for line in logged_requests(log, offset))):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    reached = [line for line in logged_requests(log, offset) if marker not in line]
    return Report(outcomes, reached, seen)
