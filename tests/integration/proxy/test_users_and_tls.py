"""`users` changes against the running proxy, TLS, and /health when MLflow is down."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.integration.proxy.support import loopback_url, settings_for
from tests.support.http import SEARCH, client, self_signed
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration


def test_users_cli_against_the_running_proxy(platform: Platform) -> None:
    url = loopback_url(platform) + SEARCH
    name, password = "proxy-test-user", "Zq7-kT2p-Wm9x-Lr4v"
    users_file = platform.settings.users_file

    def as_user(pw: str) -> int:
        return client("127.0.0.51", (name, pw)).get(url, timeout=10).status_code

    assert as_user(password) == 401
    added = subprocess.run(
        [*_cli(platform), "users", "add", name, "--password-stdin", "--json"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["generated_password"] is None
    assert as_user(password) == 200  # no reload
    assert password not in users_file.read_text()
    assert oct(users_file.stat().st_mode & 0o777) == "0o640"
    before = users_file.read_bytes()
    for args, stdin, reason in [
        (["users", "add", name, "--password-stdin"], "Another-Good-Pass-93\n", "already exists"),
        (["users", "add", "someone-else", "--password-stdin"], "short\n", "shorter than 12"),
        (["users", "add", "someone-else", "--password-stdin"], "password-qwerty-1\n", "common"),
        (["users", "add", "bad name!", "--generate"], "", "not allowed"),
    ]:
        refused = subprocess.run(
            [*_cli(platform), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stderr.count("\n") == 1 and reason in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert users_file.read_bytes() == before, args
    listed = json.loads(platform.cli("users", "list", "--json").stdout)["users"]
    assert {"name": name, "scheme": "{SSHA}"} in [
        {"name": u["name"], "scheme": u["scheme"]} for u in listed
    ]  # (with permissions on, each entry also carries the role and grants)
    assert platform.user in [u["name"] for u in listed]
    platform.cli("users", "remove", name)
    assert as_user(password) == 401
    again = platform.cli("users", "remove", name)
    assert "skipped" in again.stdout


def _cli(platform: Platform) -> list[str]:
    from tests.integration.conftest import CLI

    return [*CLI, "--env-file", str(platform.env_file)]


@pytest.fixture
def tls_proxy(platform: Platform) -> Iterator[tuple[PlatformSettings, Path]]:
    """A second nginx of the kit, with TLS, in front of the same tracking server."""
    with scratch_dir("mlops-tls-") as root:
        cert, key = self_signed(root)
        settings = platform.settings.model_copy(
            update={
                "state_dir": root / "state",
                "proxy_port": free_port(),
                "proxy_tls_cert_file": cert,
                "proxy_tls_key_file": key,
                "proxy_users_file": None,
            }
        )
        assert settings.problems() == [] or all("TLS" not in p for p in settings.problems())
        proxy = Proxy(settings, StateFile.load(settings.state_dir))
        proxy.start(lambda _msg: None)
        try:
            yield settings, cert
        finally:
            proxy.stop(lambda _msg: None)


def test_tls_serves_https_and_redirects_http(
    platform: Platform, tls_proxy: tuple[PlatformSettings, Path]
) -> None:
    settings, cert = tls_proxy
    port = settings.proxy_port
    https = f"https://localhost:{port}"
    session = client("127.0.0.61", platform.auth)
    # TLS on the proxy, plain HTTP behind it; the Host MLflow sees is the public name.
    r = session.get(
        f"https://127.0.0.1:{port}{SEARCH}",
        verify=str(cert),
        timeout=10,
        headers={"Host": f"localhost:{platform.settings.proxy_port}"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    anonymous = client("127.0.0.62").get(
        f"https://127.0.0.1:{port}{SEARCH}", verify=str(cert), timeout=10
    )
    assert anonymous.status_code == 401
    plain = client("127.0.0.62").get(
        f"http://127.0.0.1:{port}{SEARCH}",
        allow_redirects=False,
        timeout=10,
        headers={"Host": f"localhost:{port}"},
    )
    assert plain.status_code == 308
    assert plain.headers["Location"] == f"{https}{SEARCH}"
    # With a password, plain HTTP is refused, not redirected: the client must notice.
    with_password = client("127.0.0.62", platform.auth).get(
        f"http://127.0.0.1:{port}{SEARCH}", allow_redirects=False, timeout=10
    )
    assert with_password.status_code == 403 and "Location" not in with_password.headers
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_health_says_unavailable_when_mlflow_is_down() -> None:
    """The kit's nginx in front of a port where nothing listens."""
    with scratch_dir("mlops-down-") as root:
        settings = settings_for(root)
        proxy = Proxy(settings, StateFile.load(settings.state_dir))
        proxy.start(lambda _msg: None)
        try:
            url = f"http://127.0.0.1:{settings.proxy_port}"
            down = requests.get(url + "/health", timeout=10)
            assert (down.status_code, down.text) == (503, "unavailable\n")
            assert requests.get(url + "/-/proxy-health", timeout=10).text == "ok\n"
            auth = (settings.proxy_user, settings.proxy_password.get_secret_value())
            assert requests.get(url + SEARCH, auth=auth, timeout=10).status_code == 502
        finally:
            proxy.stop(lambda _msg: None)


def test_plain_and_tls_ports_redirect_plain_http_except_health(tmp_path: Path) -> None:
    """The compose layout: a snippet adds a TLS port and asks for the redirect."""
    with scratch_dir("mlops-dual-") as root:
        cert, key = self_signed(root)
        settings = settings_for(root)
        tls_port = free_port()
        snippets = settings.state_dir / "nginx" / "snippets"
        snippets.mkdir(parents=True)
        (snippets / "dual.conf").write_text(
            f"listen 127.0.0.1:{tls_port} ssl;\n"
            f"ssl_certificate {cert};\nssl_certificate_key {key};\n"
            "if ($scheme = http) {\n    set $mlops_https_redirect on;\n}\n"
            f"set $mlops_https_origin https://$host:{tls_port};\n"
        )
        proxy = Proxy(settings, StateFile.load(settings.state_dir))
        proxy.start(lambda _msg: None)
        try:
            plain = f"http://127.0.0.1:{settings.proxy_port}"
            moved = requests.get(
                plain + SEARCH, headers={"Host": "mlflow.test"}, allow_redirects=False, timeout=10
            )
            assert (moved.status_code, moved.headers["Location"]) == (
                308,
                f"https://mlflow.test:{tls_port}{SEARCH}",
            )
            auth = (settings.proxy_user, settings.proxy_password.get_secret_value())
            refused = requests.get(plain + SEARCH, auth=auth, allow_redirects=False, timeout=10)
            assert refused.status_code == 403 and "Location" not in refused.headers
            assert requests.get(plain + "/-/proxy-health", timeout=10).status_code == 200
            assert requests.get(plain + "/health", timeout=10).status_code == 503  # no MLflow
            over_tls = requests.get(
                f"https://127.0.0.1:{tls_port}/-/proxy-health", verify=str(cert), timeout=10
            )
            assert over_tls.status_code == 200
            anonymous = requests.get(
                f"https://127.0.0.1:{tls_port}{SEARCH}", verify=str(cert), timeout=10
            )
            assert anonymous.status_code == 401
        finally:
            proxy.stop(lambda _msg: None)
