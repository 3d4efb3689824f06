"""TLS: the plain port beside TLS refuses credentials; TLS alone listens on TLS only;
concurrent requests per address are capped.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.reliability.side_doors_proxy.support import OTHER_USER, Recorder, StartProxy
from tests.support.http import SEARCH

pytestmark = pytest.mark.integration


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
