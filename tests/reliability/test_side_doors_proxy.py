"""Side doors of the auth proxy, tried from outside (issue 13, the proxy's part).

Each test starts the kit's own nginx (`Proxy`, the rendered template) on free ports in
front of the session stack's real tracking server, so its counters start from zero,
and talks to it over the network from distinct loopback source addresses (127.0.1.x),
as clients on different hosts would. One test puts that nginx in front of a recording
HTTP server instead: an instrument that only shows what nginx forwards.

- anonymous requests and CORS preflights never count as failed logins;
- a guesser of one user name locks out that name from that address only, not the other
  users behind the same address; spraying many names locks the address at a higher
  threshold;
- the counter's keys cannot be set by the client, and only trusted load balancers are
  believed about the client's address;
- a slow-header connection is closed; `/health` refuses a 100 MB chunked body without
  spooling it, and passes none of the client's headers to MLflow;
- the plain port beside TLS refuses credentials instead of redirecting them.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import select
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pydantic import SecretStr

from mlops_platform.render import htpasswd
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.conftest import Platform, make_stack_dir
from tests.integration.conftest import platform as platform  # the real stack, once
from tests.support.http import SEARCH, client, self_signed

pytestmark = pytest.mark.integration

OTHER_USER = ("bob", "Bob-Kt7-Wq2p-Zm9x-Lr4v")
BURST_MB = 100


@dataclass
class KitProxy:
    settings: PlatformSettings
    root: Path  # <state_dir>/nginx
    url: str
    public_host: str  # the Host MLflow accepts (the session stack's public name)
    cert: Path | None = None

    def client(self, source: str, auth: tuple[str, str] | None = None) -> requests.Session:
        """A client on its own loopback address, sending the public name as Host."""
        session = client(source, auth)
        session.headers["Host"] = self.public_host
        return session

    def access_log(self) -> list[dict[str, Any]]:
        path = self.root / "logs" / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def error_log(self) -> str:
        return (self.root / "logs" / "error.log").read_text()


StartProxy = Callable[..., KitProxy]


@pytest.fixture
def start_proxy(platform: Platform) -> Iterator[StartProxy]:
    """Start the kit's nginx (fresh counters) with settings changed as asked."""
    started: list[tuple[Proxy, Path]] = []

    def start(*, tls: bool = False, **update: Any) -> KitProxy:
        root = make_stack_dir("mlops-sidedoor-")
        values: dict[str, Any] = {
            "state_dir": root / "state",
            "proxy_port": free_port(),
            "proxy_users_file": None,
            **update,
        }
        cert = None
        if tls:
            cert, key = self_signed(root)
            values.update(proxy_tls_cert_file=cert, proxy_tls_key_file=key)
        settings = platform.settings.model_copy(update=values)
        proxy = Proxy(settings, StateFile.load(settings.state_dir))
        proxy.write_config()
        users = settings.users_file  # a second user behind the same addresses
        users.write_text(htpasswd.with_user(users.read_text(), *OTHER_USER))
        proxy.start(lambda _msg: None)
        started.append((proxy, root))
        scheme = "https" if tls else "http"
        url = f"{scheme}://127.0.0.1:{settings.proxy_port}"
        return KitProxy(settings, proxy.root, url, urlsplit(platform.url).netloc, cert)

    try:
        yield start
    finally:
        for proxy, root in started:
            proxy.stop(lambda _msg: None)
            shutil.rmtree(root, ignore_errors=True)


def codes(session: requests.Session, url: str, auths: list[Any], **kwargs: Any) -> list[int]:
    return [session.get(url, auth=auth, timeout=30, **kwargs).status_code for auth in auths]


def first_429(statuses: list[int]) -> int:
    assert 429 in statuses, statuses
    index = statuses.index(429)
    assert set(statuses[:index]) == {401} and set(statuses[index:]) == {429}, statuses
    return index


# -- the lockout: only checked passwords count, per address and user name ---------------


def test_anonymous_requests_and_preflights_never_count(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    session = proxy.client("127.0.1.1")
    anonymous = codes(session, url, [None] * 45)
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    preflights = [
        session.options(url, headers=preflight, timeout=30).status_code for _ in range(45)
    ]
    assert set(anonymous) == {401} and set(preflights) == {401}
    assert session.get(url, auth=platform.auth, timeout=30).status_code == 200
    print("\nANONYMOUS: 45 anonymous requests + 45 preflights, then the right password: 200")


def test_a_guesser_locks_out_its_user_name_not_its_neighbours(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    office = proxy.client("127.0.1.2")  # one address: a NAT, an office, a load balancer
    statuses = []
    for i in range(60):
        guess = office.get(url, auth=(platform.user, f"guess-{i:03d}"), timeout=30)
        statuses.append(guess.status_code)
        if i % 10 == 0:
            assert office.get(url, auth=OTHER_USER, timeout=30).status_code == 200, i
    locked_at = first_429(statuses)
    assert 25 <= locked_at <= 40, locked_at
    # The guessed name is locked from this address, even with its right password...
    locked = office.get(url, auth=platform.auth, timeout=30)
    assert (locked.status_code, locked.headers["Retry-After"]) == (429, "60")
    # ...while the other user of the same address, and the same name elsewhere, work.
    assert office.get(url, auth=OTHER_USER, timeout=30).status_code == 200
    assert proxy.client("127.0.1.3").get(url, auth=platform.auth, timeout=30).status_code == 200
    print(f"\nLOCKOUT: {locked_at} wrong passwords for one name, then 429 for that name only")


def test_spraying_many_names_locks_the_address_at_a_higher_threshold(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    sprayer = proxy.client("127.0.1.4")
    statuses = codes(sprayer, url, [(f"user{i:03d}", "Spray-Pass-2024") for i in range(130)])
    locked_at = first_429(statuses)
    assert 90 <= locked_at <= 110, locked_at
    # The whole address waits out the lockout (documented); other addresses do not.
    assert sprayer.get(url, auth=OTHER_USER, timeout=30).status_code == 429
    assert proxy.client("127.0.1.5").get(url, auth=OTHER_USER, timeout=30).status_code == 200
    print(f"\nSPRAY: {locked_at} failed logins over as many names, then the address gets 429")


def test_the_client_cannot_set_the_counter_keys(
    platform: Platform, start_proxy: StartProxy
) -> None:
    """Forged counter headers, and a forged X-Forwarded-For with no trusted balancer."""
    proxy = start_proxy()
    url = proxy.url + SEARCH
    victim = "127.0.1.7"
    guesser = proxy.client("127.0.1.6")
    statuses = []
    for i in range(50):
        forged = {
            "X-Mlops-Client": f"10.9.{i}.1",
            "X-Mlops-Login": f"10.9.{i}.1 {platform.user}",
            "X-Forwarded-For": f"10.8.{i}.1",
            "X-Real-IP": f"10.7.{i}.1",
        }
        statuses.append(
            guesser.get(
                url, auth=(platform.user, f"guess-{i}"), headers=forged, timeout=30
            ).status_code
        )
    first_429(statuses)  # every forged key was ignored: one counter, the TCP peer's
    forged_victim = {"X-Mlops-Client": victim, "X-Mlops-Login": f"{victim} {platform.user}"}
    for i in range(40):  # and nothing lands on the victim's counter
        guesser.get(url, auth=(platform.user, f"more-{i}"), headers=forged_victim, timeout=30)
    assert proxy.client(victim).get(url, auth=platform.auth, timeout=30).status_code == 200
    assert {entry["client"] for entry in proxy.access_log()} <= {"127.0.1.6", victim}


def test_only_a_trusted_load_balancer_is_believed(
    platform: Platform, start_proxy: StartProxy
) -> None:
    balancer, stranger = "127.0.1.8", "127.0.1.9"
    proxy = start_proxy(proxy_trusted_proxies=f"{balancer}/32")
    url = proxy.url + SEARCH
    via_balancer = proxy.client(balancer)

    def guess(i: int, xff: str) -> int:
        return via_balancer.get(
            url, auth=(platform.user, f"guess-{i}"), headers={"X-Forwarded-For": xff}, timeout=30
        ).status_code

    # The balancer appends the client it saw; what the client prepended is not believed.
    statuses = [guess(i, f"203.0.113.{i % 200}, 198.51.100.1") for i in range(45)]
    first_429(statuses)
    behind = {"X-Forwarded-For": "198.51.100.2"}  # another client behind the same balancer
    assert via_balancer.get(url, auth=platform.auth, headers=behind, timeout=30).status_code == 200
    locked = {"X-Forwarded-For": "198.51.100.1"}
    assert via_balancer.get(url, auth=platform.auth, headers=locked, timeout=30).status_code == 429
    # From an address that is not a trusted balancer, X-Forwarded-For is ignored.
    r = proxy.client(stranger).get(url, auth=platform.auth, headers=locked, timeout=30)
    assert r.status_code == 200
    clients = {entry["client"] for entry in proxy.access_log()}
    assert clients == {"198.51.100.1", "198.51.100.2", stranger}, clients


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


class Recorder(http.server.ThreadingHTTPServer):
    """Stands where MLflow would and records the headers nginx forwards, nothing more."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.hold: threading.Event | None = None  # set: answers wait until it is released
        self.arrived = threading.Semaphore(0)
        super().__init__(("127.0.0.1", port), RecordingHandler)


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.server.arrived.release()
        if self.server.hold is not None:
            self.server.hold.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


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


# -- TLS: the plain port ------------------------------------------------------------------


def test_plain_port_beside_tls_refuses_credentials_and_redirects_the_rest(
    platform: Platform, start_proxy: StartProxy
) -> None:
    plain_port = free_port()
    proxy = start_proxy(tls=True, proxy_plain_port=plain_port)
    tls_port = proxy.settings.proxy_port
    plain = f"http://127.0.0.1:{plain_port}"
    session = proxy.client("127.0.1.11")
    host = {"Host": "localhost"}
    moved = session.get(plain + SEARCH, headers=host, allow_redirects=False, timeout=30)
    assert (moved.status_code, moved.headers["Location"]) == (
        308,
        f"https://localhost:{tls_port}{SEARCH}",
    )
    for auth in (platform.auth, (platform.user, "wrong-password-123")):
        refused = session.get(plain + SEARCH, auth=auth, allow_redirects=False, timeout=30)
        assert refused.status_code == 403 and "Location" not in refused.headers
        assert "plain HTTP" in refused.text
    assert session.get(plain + "/health", timeout=30).text.strip().lower() == "ok"
    assert session.get(plain + "/-/proxy-health", timeout=30).status_code == 200
    # Plain HTTP sent to the TLS port itself: the same rule.
    on_tls_port = f"http://127.0.0.1:{tls_port}{SEARCH}"
    refused = session.get(on_tls_port, auth=platform.auth, allow_redirects=False, timeout=30)
    assert refused.status_code == 403 and "Location" not in refused.headers
    moved = session.get(on_tls_port, headers=host, allow_redirects=False, timeout=30)
    assert (moved.status_code, moved.headers["Location"]) == (
        308,
        f"https://localhost:{tls_port}{SEARCH}",
    )
    # None of that counted as a failed login; TLS itself works.
    r = session.get(
        f"https://127.0.0.1:{tls_port}{SEARCH}",
        auth=platform.auth,
        verify=str(proxy.cert),
        headers={"Host": f"localhost:{platform.settings.proxy_port}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_tls_without_a_plain_port_listens_on_tls_only(start_proxy: StartProxy) -> None:
    proxy = start_proxy(tls=True)
    site = (proxy.root / "conf.d" / "mlflow.conf").read_text()
    snippets = "".join(p.read_text() for p in (proxy.root / "snippets").glob("*.conf"))
    listens = [
        line.strip()
        for line in (site + snippets).splitlines()
        if line.strip().startswith("listen ") and "unix:" not in line
    ]
    assert listens == [f"listen 127.0.0.1:{proxy.settings.proxy_port} ssl;"], listens
    context = ssl.create_default_context(cafile=str(proxy.cert))
    address = ("127.0.0.1", proxy.settings.proxy_port)
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_concurrent_requests_per_address_are_capped(start_proxy: StartProxy) -> None:
    """MLOPS_PROXY_CONN_LIMIT requests in progress per address; the next one gets 429."""
    port = free_port()
    recorder = Recorder(port)
    recorder.hold = threading.Event()
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    proxy = start_proxy(server_port=port, proxy_conn_limit=2)
    url = proxy.url + "/api/2.0/x"
    results: list[int] = []

    def slow(source: str) -> None:
        results.append(proxy.client(source, OTHER_USER).get(url, timeout=60).status_code)

    held = [threading.Thread(target=slow, args=("127.0.1.13",)) for _ in range(2)]
    try:
        for thread in held:
            thread.start()
        for _ in held:  # both are in progress at the server
            assert recorder.arrived.acquire(timeout=30)
        third = proxy.client("127.0.1.13", OTHER_USER).get(url, timeout=30)
        assert third.status_code == 429
        other = threading.Thread(target=slow, args=("127.0.1.14",))  # another address
        other.start()
        assert recorder.arrived.acquire(timeout=30)
    finally:
        recorder.hold.set()
        for thread in held:
            thread.join()
        recorder.shutdown()
        recorder.server_close()
    other.join()
    assert results == [200, 200, 200]
