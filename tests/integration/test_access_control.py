"""Access control through the real proxy: crafted requests without valid credentials.

Each one is refused with the status the layer it targets must give (401 from the password
check, 400 or 404 where nginx rejects the request line, path or a header), and none
reaches the tracking server: its access log has no line for any of them, while one
legitimate request sent right after them does appear there (so the log really records
what gets through). Requests go over raw sockets so that malformed request lines, headers
and encodings reach nginx exactly as written.

Every case is sent from its own loopback address (Linux routes all of 127.0.0.0/8 to
`lo`): the failed-login lockout and the per-client rate limit, whatever their policy,
never stand in front of the check a case is meant to reach. A request that times out is a
failure, not a refusal.

The check is proved able to fail: the same cases go through a deliberately broken nginx
(the session stack's rendered configuration with one rule removed, run on another port in
front of the same tracking server), and the check must report the vector that rule
guarded.
"""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.conftest import Platform, make_stack_dir

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


def test_no_crafted_request_gets_through(platform: Platform) -> None:
    port = urlsplit(platform.url).port
    assert port is not None
    report = check_proxy(platform, port)
    assert len(report.outcomes) >= 100
    assert len({o.source for o in report.outcomes}) == len(report.outcomes)
    assert report.problems == [], "\n".join(report.problems)
    by_status: dict[int | None, int] = {}
    for outcome in report.outcomes:
        by_status[outcome.status] = by_status.get(outcome.status, 0) + 1
    print(
        f"\nACCESS REPORT: {len(report.outcomes)} crafted requests, each from its own address, "
        f"each refused with its expected status {dict(sorted(by_status.items()))}; "
        "none reached MLflow, the legitimate control did"
    )


# ---------------------------------------------------------------------------------------
# The negative control: a broken proxy must make the same check fail.

ARTIFACTS_LOCATION = "location ^~ /api/2.0/mlflow-artifacts/ {\n"
TRAVERSAL_RULE = re.compile(
    r"\n    if \(\$request_uri ~\* \"\(\^\|\[/=\?&\]\|%2f.*?\n    \}\n", re.S
)

BROKEN_VARIANTS = {
    # the artifact routes without a password: anonymous requests reach MLflow
    "artifacts without auth": lambda conf: _replace_once(
        conf, ARTIFACTS_LOCATION, ARTIFACTS_LOCATION + "        auth_basic off;\n"
    ),
    # the traversal rule gone: encoded `..` is no longer refused before authentication
    "no traversal rule": lambda conf: _sub_once(conf, TRAVERSAL_RULE, "\n"),
}


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the rendered configuration no longer has {old!r}"
    return text.replace(old, new)


def _sub_once(text: str, pattern: re.Pattern[str], new: str) -> str:
    result, count = pattern.subn(new, text)
    assert count == 1, f"the rendered configuration no longer matches {pattern.pattern!r}"
    return result


@pytest.fixture
def broken_proxy(platform: Platform) -> Iterator[tuple[Platform, dict[str, int]]]:
    """One nginx per broken variant, in front of the session stack's tracking server."""
    ports: dict[str, int] = {}
    procs: list[subprocess.Popen[bytes]] = []
    roots = []
    try:
        for name, breaks in BROKEN_VARIANTS.items():
            root = make_stack_dir("mlops-broken-proxy-")
            roots.append(root)
            port = free_port()
            settings = platform.settings.model_copy(
                update={
                    "state_dir": root,
                    "proxy_port": port,
                    "proxy_users_file": platform.settings.users_file,
                }
            )
            proxy = Proxy(settings, StateFile.load(root))
            proxy.write_config()
            site = proxy.root / "conf.d" / "mlflow.conf"
            original = site.read_text()
            site.write_text(breaks(original))
            assert site.read_text() != original
            log = open(proxy.root / "logs" / "nginx.log", "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(
                [
                    proxy.binary(),
                    "-c",
                    str(proxy.root / "nginx.conf"),
                    "-p",
                    str(proxy.root),
                    "-e",
                    str(proxy.root / "logs" / "error.log"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            procs.append(proc)
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (proxy.root / "logs" / "error.log").read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/-/proxy-health", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"the broken nginx ({name}) did not start"
                time.sleep(0.1)
            ports[name] = port
        yield platform, ports
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def test_a_broken_proxy_fails_the_check(broken_proxy: tuple[Platform, dict[str, int]]) -> None:
    platform, ports = broken_proxy
    artifacts = check_proxy(platform, ports["artifacts without auth"]).problems
    # Anonymous artifact requests now reach MLflow. With MLflow's permissions on, the
    # tracking server answers them 401 itself, so the status alone would not tell: the
    # tracking log does.
    assert any("reached the tracking server" in p and "mlflow-artifacts" in p for p in artifacts), (
        artifacts
    )
    assert all("mlflow-artifacts" in p for p in artifacts), artifacts

    traversal = check_proxy(platform, ports["no traversal rule"]).problems
    # nginx itself still refuses some (a path above the root); the rule's own cases go on
    assert any(
        p.startswith("encoded /api/2.0/mlflow/../mlflow/") and "got 401, expected 400" in p
        for p in traversal
    ), traversal
    assert all("expected 400" in p for p in traversal), traversal
    print(
        f"\nNEGATIVE CONTROL: artifacts without auth -> {len(artifacts)} problems "
        f"({sum('reached the tracking server' in p for p in artifacts)} reached MLflow); "
        f"no traversal rule -> {len(traversal)} problems"
    )


def test_valid_credentials_behave_as_mlflow_directly(platform: Platform) -> None:
    direct = f"http://127.0.0.1:{platform.settings.server_port}"
    # What nginx adds for a logged-in user (ignored by a server without permissions).
    direct_headers = {
        "Host": f"localhost:{platform.settings.server_port}",
        "X-Forwarded-User": platform.user,
        "X-Mlops-Proxy-Secret": platform.settings.proxy_secret.get_secret_value(),
    }
    for path in [
        "/api/2.0/mlflow/experiments/search?max_results=5",
        "/ajax-api/2.0/mlflow/experiments/search?max_results=5",
        "/api/2.0/mlflow/registered-models/search",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        "/api/2.0/mlflow/experiments/get?experiment_id=999999",
        "/version",
    ]:
        via_proxy = requests.get(platform.url + path, auth=platform.auth, timeout=10)
        straight = requests.get(direct + path, headers=direct_headers, timeout=10)
        assert via_proxy.status_code == straight.status_code, path
        assert via_proxy.content == straight.content, path
