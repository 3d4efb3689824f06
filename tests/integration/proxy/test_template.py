"""The template, statically: `nginx -t` on the local and the compose rendering."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops_platform.render import nginx as render_nginx
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.proxy.support import settings_for
from tests.support.http import self_signed
from tests.support.nginx import nginx_test

pytestmark = pytest.mark.integration


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
    try:
        result = nginx_test(proxy.root / "nginx.conf", proxy.root)
    finally:
        # Nothing runs; this removes the socket folder made outside the state folder when
        # the path there is too long for a unix socket (xdist's longer tmp paths).
        proxy.stop(lambda _msg: None)
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


def _stock_nginx_conf(tmp_path: Path, logs: Path, conf_d: Path) -> str:
    """The stock nginx.conf of the official image, with its paths moved under TMP_PATH."""
    return f"""worker_processes auto;
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


def test_nginx_accepts_the_compose_rendering(tmp_path: Path) -> None:
    """As the nginx image does it: envsubst of the defined names, included in `http {}`."""
    envsubst = shutil.which("envsubst")
    if not envsubst:
        pytest.fail("envsubst is not installed: apt-get install -y gettext-base", pytrace=False)
    conf_d, snippets, logs, cache = (tmp_path / n for n in ("conf.d", "snippets", "log", "cache"))
    for folder in (conf_d, snippets, logs):
        folder.mkdir()
    # The shipped example for compose behind a load balancer, as a user would copy it.
    example = Path(__file__).resolve().parents[3] / "nginx" / "snippets" / "real-ip.conf.example"
    shutil.copy(example, snippets / "real-ip.conf")
    users = tmp_path / "htpasswd"
    users.write_text("admin:{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    environment = {
        "MLOPS_PROXY_LISTEN": "8080",
        "MLOPS_UPSTREAM": "tracking:5000",
        "MLOPS_UPSTREAM_KEEPALIVE": "keepalive 32;",
        # scripts/nginx-artifact-store's, for compose's default store.
        "MLOPS_ARTIFACT_STORE_URL": "http://seaweedfs:8333",
        "MLOPS_ARTIFACT_STORE_SERVER": "seaweedfs:8333",
        "MLOPS_ARTIFACT_STORE_HOST": "seaweedfs:8333",
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
    (tmp_path / "nginx.conf").write_text(_stock_nginx_conf(tmp_path, logs, conf_d))
    # `tracking` does not resolve here: nginx -t resolves upstream names, so test with
    # the same file pointing at an address (the only difference compose makes).
    local = rendered.replace("tracking:5000", "127.0.0.1:5000")
    (conf_d / "mlflow.conf").write_text(local.replace("seaweedfs:8333", "127.0.0.1:8333"))
    result = nginx_test(tmp_path / "nginx.conf", tmp_path)
    assert result.returncode == 0, result.stderr
