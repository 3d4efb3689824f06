"""The nginx auth proxy, for real: the template under `nginx -t` as both ways render it,
then requests through the running local stack (route families, the failed-login lockout,
a legitimate burst, a 1 GB artifact, Host checks, `users` changes, TLS).

Clients that must not share the failed-login counter of other tests bind their own
loopback source address (127.0.0.x), as clients on different hosts would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from mlops_platform.render import nginx as render_nginx
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.conftest import Platform, make_stack_dir
from tests.support.http import SEARCH, SourceAdapter, client, self_signed

pytestmark = pytest.mark.integration


def loopback_url(platform: Platform) -> str:
    """The proxy by address (a source-bound socket cannot reach `localhost` as ::1)."""
    return f"http://127.0.0.1:{platform.settings.proxy_port}"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if not found:
        pytest.fail("nginx is not installed: apt-get install -y nginx", pytrace=False)
    return found


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_for(root: Path, **values: Any) -> PlatformSettings:
    base = {
        "env": "dev",
        "state_dir": root / "state",
        "proxy_password": "a-long-enough-password-1",
        "proxy_port": free_port(),
        "server_port": free_port(),
    }
    return PlatformSettings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]


# -- the template, statically --------------------------------------------------------


LAYOUTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "tls": {"tls": True},
    "tls+plain-port": {"tls": True, "proxy_plain_port": "free"},
    "trusted-balancers": {"proxy_trusted_proxies": "10.0.0.0/8,192.0.2.7,2001:db8::/32"},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nginx_accepts_the_local_rendering(tmp_path: Path, layout: str) -> None:
    extra: dict[str, Any] = dict(LAYOUTS[layout])
    tls = bool(extra.pop("tls", False))
    if tls:
        cert, key = self_signed(tmp_path)
        extra.update(proxy_tls_cert_file=cert, proxy_tls_key_file=key)
    if extra.get("proxy_plain_port") == "free":
        extra["proxy_plain_port"] = free_port()
    settings = settings_for(tmp_path, **extra)
    assert [p for p in settings.problems() if "PROXY" in p and "SECRET" not in p] == []
    proxy = Proxy(settings, StateFile.load(settings.state_dir))
    proxy.write_config()
    proxy.stop(lambda _msg: None)  # nothing runs; removes a socket folder made outside
    result = nginx_test(proxy.root / "nginx.conf", proxy.root)
    assert result.returncode == 0, result.stderr
    site = (proxy.root / "conf.d" / "mlflow.conf").read_text()
    directives = "\n".join(ln for ln in site.splitlines() if not ln.strip().startswith("#"))
    assert "${" not in directives and "MLOPS_" not in directives  # all substituted
    assert (f"{settings.proxy_port} ssl;" in site) is tls
    snippets = proxy.root / "snippets"
    assert (snippets / "tls.conf").exists() is tls
    plain_listen = f"listen 127.0.0.1:{settings.proxy_plain_port};"
    assert (tls and plain_listen in (snippets / "tls.conf").read_text()) is (
        layout == "tls+plain-port"
    )
    assert (snippets / "real-ip.conf").exists() is (layout == "trusted-balancers")


def test_nginx_accepts_the_compose_rendering(tmp_path: Path) -> None:
    """As the nginx image does it: envsubst of the defined names, included in `http {}`."""
    envsubst = shutil.which("envsubst")
    if not envsubst:
        pytest.fail("envsubst is not installed: apt-get install -y gettext-base", pytrace=False)
    conf_d, snippets, logs, cache = (tmp_path / n for n in ("conf.d", "snippets", "log", "cache"))
    for folder in (conf_d, snippets, logs):
        folder.mkdir()
    # The shipped example for compose behind a load balancer, as a user would copy it.
    example = Path(__file__).resolve().parents[2] / "nginx" / "snippets" / "real-ip.conf.example"
    shutil.copy(example, snippets / "real-ip.conf")
    users = tmp_path / "htpasswd"
    users.write_text("admin:{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    environment = {
        "MLOPS_PROXY_LISTEN": "8080",
        "MLOPS_UPSTREAM": "tracking:5000",
        "MLOPS_UPSTREAM_KEEPALIVE": "keepalive 32;",
        "MLOPS_USERS_FILE": str(users),
        "MLOPS_NGINX_SNIPPETS": str(snippets),
        "MLOPS_ACCESS_LOG": str(logs / "access.log"),
        "MLOPS_AUTH_FAIL_SOCKET": str(tmp_path / "auth-failures.sock"),
        "MLOPS_LOCKOUT_CACHE": str(cache),
        "MLOPS_PROXY_BODY_SIZE": "5g",
        "MLOPS_PROXY_TIMEOUT": "600",
        "MLOPS_PROXY_RATE_LIMIT": "300",
        "MLOPS_PROXY_RATE_BURST": "600",
        "MLOPS_PROXY_CONN_LIMIT": "256",
        "MLOPS_PROXY_CLIENT_TIMEOUT": "20",
        "MLOPS_PROXY_SECRET": "s" * 40,
    }
    needed = set(render_nginx._VAR.findall(render_nginx.template_text()))
    assert needed == set(environment), "the compose environment must set exactly these"
    # The image substitutes every defined variable; some are always defined there.
    defined = {**environment, "HOSTNAME": "abc", "HOME": "/root", "PATH": "/usr/bin"}
    defined.update({"NGINX_VERSION": "1.27.5", "PKG_RELEASE": "1", "NJS_VERSION": "0.9.0"})
    shell_format = " ".join(f"${{{name}}}" for name in defined)
    rendered = subprocess.run(
        [envsubst, shell_format],
        input=render_nginx.template_text(),
        capture_output=True,
        text=True,
        env=defined,
        check=True,
    ).stdout
    directives = "\n".join(ln for ln in rendered.splitlines() if not ln.strip().startswith("#"))
    assert "${" not in directives and "MLOPS_" not in directives
    assert "$binary_remote_addr" in directives and "$http_host" in directives  # nginx's own
    (conf_d / "mlflow.conf").write_text(rendered)
    (tmp_path / "nginx.conf").write_text(
        # The stock nginx.conf of the official image, with its paths moved under tmp_path.
        f"""worker_processes auto;
error_log {logs}/error.log notice;
pid {tmp_path}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log {logs}/access.log main;
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    sendfile on;
    keepalive_timeout 65;
    include {conf_d}/*.conf;
}}
"""
    )
    # `tracking` does not resolve here: nginx -t resolves upstream names, so test with
    # the same file pointing at an address (the only difference compose makes).
    (conf_d / "mlflow.conf").write_text(rendered.replace("tracking:5000", "127.0.0.1:5000"))
    result = nginx_test(tmp_path / "nginx.conf", tmp_path)
    assert result.returncode == 0, result.stderr


# -- through the running stack -------------------------------------------------------

FAMILIES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", SEARCH, {}),
    ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=1", {}),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", {}),
    ("GET", "/static-files/favicon.ico", {}),
    ("POST", "/graphql", {"json": {"query": "{ __typename }"}}),
    ("GET", "/metrics", {}),
]


def test_every_route_family_needs_a_password(platform: Platform) -> None:
    url = loopback_url(platform)
    anonymous = client("127.0.0.21")
    wrong = client("127.0.0.22", (platform.user, "wrong-password-123"))
    unknown = client("127.0.0.22", ("nobody-here", "wrong-password-123"))
    good = client("127.0.0.23", platform.auth)
    statuses = {}
    for method, path, kwargs in FAMILIES:
        for who, session in (("anonymous", anonymous), ("wrong", wrong), ("unknown", unknown)):
            r = session.request(method, url + path, timeout=30, **kwargs)
            assert r.status_code == 401, (who, path, r.status_code)
            assert r.headers["WWW-Authenticate"] == 'Basic realm="MLflow"'
            assert "mlflow" not in r.text.lower()  # nginx's page: nothing from upstream
        r = good.request(method, url + path, timeout=30, **kwargs)
        statuses[path] = r.status_code
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "nginx/" not in r.headers.get("Server", "")
    assert statuses == {path: 200 for _, path, _ in FAMILIES}
    # The session stack runs with MLOPS_PROMETHEUS=true: the metrics Prometheus scrapes
    # (monitoring/prometheus.yml), names the Grafana dashboard uses.
    metrics = good.get(url + "/metrics", timeout=30).text
    assert "mlflow_http_request_total" in metrics or "mlflow_http_request_duration" in metrics


def test_health_needs_no_password_and_says_nothing(platform: Platform) -> None:
    url = loopback_url(platform)
    r = requests.get(url + "/health", timeout=10)
    assert (r.status_code, r.text.strip().lower()) == (200, "ok")
    assert r.headers["Cache-Control"] == "no-store"
    # Nothing but the status, the body "OK" and generic headers: no version, no upstream.
    names = {name.lower() for name in r.headers}
    assert names <= {
        "server",
        "date",
        "content-type",
        "content-length",
        "connection",
        "cache-control",
        "x-content-type-options",
        "x-frame-options",
        "vary",
    }, r.headers
    assert r.headers["Server"] == "nginx"
    assert requests.post(url + "/health", timeout=10).status_code == 403
    assert requests.get(url + "/health/../" + SEARCH, timeout=10).status_code in (400, 401)
    assert requests.get(url + "/healthz", timeout=10).status_code == 401


def test_failed_logins_lock_out_that_address_only(platform: Platform) -> None:
    url = loopback_url(platform) + SEARCH
    guesser = client("127.0.0.31")
    other = client("127.0.0.32", platform.auth)
    codes: list[int] = []
    for i in range(120):
        guess = guesser.get(url, auth=(platform.user, f"guess-{i:04d}-xyz"), timeout=10)
        codes.append(guess.status_code)
        if i % 10 == 0:
            assert other.get(url, timeout=10).status_code == 200, f"other client at guess {i}"
    first_429 = codes.index(429)
    assert set(codes[:first_429]) == {401} and set(codes[first_429:]) == {429}
    assert 20 <= first_429 <= 40, first_429
    locked = guesser.get(url, auth=platform.auth, timeout=10)
    assert locked.status_code == 429, "a locked-out address must not get its passwords checked"
    assert locked.headers["Retry-After"] == "60"
    assert other.get(url, timeout=10).status_code == 200
    print(f"\nLOCKOUT: 401 for the first {first_429} wrong passwords, then 429")


def test_a_busy_legitimate_client_is_not_throttled(platform: Platform) -> None:
    """2,000 log-metric calls from 4 threads of one address: no 429, none lost."""
    url = loopback_url(platform)
    session = client("127.0.0.41", platform.auth)
    session.mount("http://", SourceAdapter("127.0.0.41"))
    exp = session.post(
        url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"proxy-burst-{time.time_ns()}"},
        timeout=30,
    ).json()["experiment_id"]
    run_id = session.post(
        url + "/api/2.0/mlflow/runs/create", json={"experiment_id": exp}, timeout=30
    ).json()["run"]["info"]["run_id"]

    def log(step: int) -> int:
        return session.post(
            url + "/api/2.0/mlflow/runs/log-metric",
            json={
                "run_id": run_id,
                "key": "loss",
                "value": 1 / (step + 1),
                "timestamp": 0,
                "step": step,
            },
            timeout=60,
        ).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(log, range(2000)))
    seconds = time.perf_counter() - started
    assert codes.count(200) == 2000, {c: codes.count(c) for c in set(codes)}
    history = session.get(
        url + "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss", "max_results": 5000},
        timeout=60,
    ).json()["metrics"]
    assert len(history) == 2000
    print(f"\nBURST: 2000 log-metric calls in {seconds:.1f} s ({2000 / seconds:.0f}/s), no 429")


def test_public_host_accepted_unknown_host_refused_by_mlflow(platform: Platform) -> None:
    url = loopback_url(platform) + SEARCH
    session = client("127.0.0.42", platform.auth)
    public = urlsplit(platform.url).netloc
    assert session.get(url, headers={"Host": public}, timeout=10).status_code == 200
    refused = session.get(url, headers={"Host": "evil.example"}, timeout=10)
    # nginx passes any Host on (server_name _); MLflow's --allowed-hosts refuses it.
    assert refused.status_code == 403
    assert "Invalid Host header" in refused.text


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def big_file() -> Iterator[tuple[Path, str]]:
    folder = Path(tempfile.mkdtemp(prefix="mlops-1g-", dir="/tmp"))
    path = folder / "model.bin"
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for i in range(1024):  # 1 GiB, written 1 MiB at a time
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    try:
        yield path, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_one_gigabyte_artifact_through_the_proxy(
    platform: Platform, mlflow_client_env: dict[str, str], big_file: tuple[Path, str]
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    path, expected = big_file
    assert mlflow_client_env["MLFLOW_TRACKING_URI"] == platform.url  # the proxy
    mlflow.set_experiment("proxy-1g")
    with mlflow.start_run() as run:
        started = time.perf_counter()
        mlflow.log_artifact(str(path), artifact_path="big")
        upload = time.perf_counter() - started
    out = Path(tempfile.mkdtemp(prefix="mlops-1g-dl-", dir="/tmp"))
    try:
        started = time.perf_counter()
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="big/model.bin", dst_path=str(out)
        )
        download = time.perf_counter() - started
        assert Path(local).stat().st_size == 1 << 30
        assert _sha256_of(Path(local)) == expected
    finally:
        shutil.rmtree(out, ignore_errors=True)
        MlflowClient()._tracking_client._get_artifact_repo(run.info.run_id).delete_artifacts("big")
    print(f"\n1 GiB ARTIFACT via proxy: upload {upload:.1f} s, download {download:.1f} s")


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
    root = make_stack_dir("mlops-tls-")
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
        shutil.rmtree(root, ignore_errors=True)


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
    root = make_stack_dir("mlops-down-")
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
        shutil.rmtree(root, ignore_errors=True)


def test_plain_and_tls_ports_redirect_plain_http_except_health(tmp_path: Path) -> None:
    """The compose layout: a snippet adds a TLS port and asks for the redirect."""
    root = make_stack_dir("mlops-dual-")
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
        shutil.rmtree(root, ignore_errors=True)
