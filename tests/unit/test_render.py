"""Renderers are pure: settings in, argv / env / files out."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_platform.render import htpasswd
from mlops_platform.render.envfile import env_file_text
from mlops_platform.render.server import client_env, server_argv, server_env
from mlops_platform.settings import PlatformSettings
from tests.unit.conftest import SECRETS


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(**SECRETS)


def test_server_argv_carries_no_secret(settings: PlatformSettings) -> None:
    argv = " ".join(server_argv(settings))
    for value in SECRETS.values():
        assert value not in argv
    assert "postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow" in argv


def test_server_env_carries_the_secrets(settings: PlatformSettings) -> None:
    env = server_env(settings)
    assert env["PGPASSWORD"] == SECRETS["db_password"]
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRETS["s3_secret_access_key"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS["flask_secret_key"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "path"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_proxied_mode_serves_artifacts(settings: PlatformSettings) -> None:
    argv = server_argv(settings)
    assert "--serve-artifacts" in argv
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://mlflow-artifacts/artifacts"
    assert "AWS_ACCESS_KEY_ID" not in client_env(settings)


def test_direct_mode_gives_clients_the_store(settings: PlatformSettings) -> None:
    direct = settings.model_copy(update={"artifact_mode": "direct"})
    argv = server_argv(direct)
    assert "--no-serve-artifacts" in argv
    assert argv[argv.index("--default-artifact-root") + 1] == "s3://mlflow-artifacts/artifacts"
    env = client_env(direct)
    assert env["AWS_ACCESS_KEY_ID"] == SECRETS["s3_access_key_id"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"


def test_allowed_hosts_include_public_name(settings: PlatformSettings) -> None:
    public = settings.model_copy(update={"public_url": "https://ml.example.com:8443"})
    argv = server_argv(public)
    hosts = argv[argv.index("--allowed-hosts") + 1].split(",")
    assert "ml.example.com:8443" in hosts and "ml.example.com" in hosts
    assert argv[argv.index("--cors-allowed-origins") + 1] == "https://ml.example.com:8443"


def test_workers_and_prometheus(settings: PlatformSettings) -> None:
    tuned = settings.model_copy(update={"server_workers": 4, "prometheus": True})
    argv = server_argv(tuned)
    assert argv[argv.index("--workers") + 1] == "4"
    assert "--expose-prometheus" in argv


def test_client_env_has_proxy_credentials(settings: PlatformSettings) -> None:
    env = client_env(settings)
    assert env == {
        "MLFLOW_TRACKING_URI": "http://localhost:8080",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "8",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": SECRETS["proxy_password"],
    }


def test_htpasswd_roundtrip() -> None:
    entry = htpasswd.entry("alice", "correct horse battery", salt=b"0123456789abcdef")
    user, hashed = entry.split(":", 1)
    assert user == "alice" and hashed.startswith("{SSHA}")
    assert htpasswd.verify(hashed, "correct horse battery")
    assert not htpasswd.verify(hashed, "wrong")
    assert "correct horse" not in entry


def test_htpasswd_with_user_replaces_only_that_user() -> None:
    text = htpasswd.with_user("", "alice", "pw-one-long-enough")
    text = htpasswd.with_user(text, "bob", "pw-two-long-enough")
    text = htpasswd.with_user(text, "alice", "pw-three-long-enough")
    users = htpasswd.parse(text)
    assert sorted(users) == ["alice", "bob"]
    assert htpasswd.verify(users["alice"], "pw-three-long-enough")
    assert htpasswd.verify(users["bob"], "pw-two-long-enough")


def test_env_file_documents_every_setting() -> None:
    text = env_file_text({"db_password": "x"}, header="test")
    for name in PlatformSettings.model_fields:
        assert re.search(rf"^#? ?MLOPS_{name.upper()}=", text, re.M), name
    assert "\nMLOPS_DB_PASSWORD=x\n" in text
    assert "# MLOPS_SERVER_PORT=5000" in text


# -- the nginx proxy ---------------------------------------------------------------


def proxy_problems(settings: PlatformSettings) -> list[str]:
    """The proxy's own problems (other areas' secrets are not set in these tests)."""
    return [p for p in settings.problems() if p.startswith("MLOPS_PROXY_") and "SECRET" not in p]


def _nginx_values(settings: PlatformSettings) -> dict[str, str]:
    from mlops_platform.render import nginx

    return nginx.template_variables(settings, upstream="127.0.0.1:5000", snippets_dir="/p/snippets")


def test_template_names_exactly_the_variables_the_kit_sets(settings: PlatformSettings) -> None:
    from mlops_platform.render import nginx

    used = set(nginx._VAR.findall(nginx.template_text()))
    assert used == set(_nginx_values(settings))
    with pytest.raises(KeyError, match="MLOPS_NOPE"):
        nginx.substitute("x ${MLOPS_NOPE} y", {})


def test_site_conf_local_layout_and_limits(settings: PlatformSettings) -> None:
    from mlops_platform.render import nginx

    values = _nginx_values(settings)
    assert values["MLOPS_ACCESS_LOG"] == "/p/logs/access.log"
    assert values["MLOPS_AUTH_FAIL_SOCKET"] == "/p/tmp/auth-failures.sock"
    assert values["MLOPS_LOCKOUT_CACHE"] == "/p/tmp/lockout"
    assert values["MLOPS_PROXY_LISTEN"] == "127.0.0.1:8080"
    site = nginx.site_conf(settings, upstream="127.0.0.1:5000", snippets_dir="/p/snippets")
    assert "rate=300r/s" in site and "burst=600 nodelay" in site
    upstream = site.split("upstream mlflow_tracking", 1)[1].split("}", 1)[0]
    # Kept-alive upstream connections only with the server's TCP_NODELAY fix.
    assert re.search(r"^\s*keepalive 32;", upstream, re.M)
    slow = settings.model_copy(update={"server_tcp_nodelay": False})
    site = nginx.site_conf(slow, upstream="127.0.0.1:5000", snippets_dir="/p/snippets")
    upstream = site.split("upstream mlflow_tracking", 1)[1].split("}", 1)[0]
    assert not re.search(r"^\s*keepalive\b", upstream, re.M)
    assert "proxy_request_buffering off;" in site and "client_max_body_size 5g;" in site
    assert 'proxy_set_header Authorization "";' in site
    # The Authorization header is only ever tested for presence: never logged, never a key.
    log_format = site.split("log_format", 1)[1].split(";", 1)[0]
    keys = [ln for ln in site.splitlines() if re.search(r"_zone |_key |^map ", ln.strip())]
    assert "authorization" not in log_format.lower()
    assert keys and not any("$http_authorization" in ln for ln in keys)
    assert "client_header_timeout 20s;" in site and "limit_conn mlops_conns_per_client 256;" in site


def test_nginx_fetches_downloads_from_a_plain_http_store_only(
    make_settings: Callable[..., PlatformSettings],
) -> None:
    """The local store (and any http:// endpoint) is nginx's to fetch allowed downloads
    from; an https endpoint or AWS itself leaves the placeholder, and the server streams."""
    from mlops_platform.artifact_handover import nginx_fetches
    from mlops_platform.render import nginx

    local = _nginx_values(make_settings(s3_port=8333))
    assert local["MLOPS_ARTIFACT_STORE_URL"] == "http://127.0.0.1:8333"
    assert local["MLOPS_ARTIFACT_STORE_SERVER"] == "127.0.0.1:8333"
    assert local["MLOPS_ARTIFACT_STORE_HOST"] == "127.0.0.1:8333"
    for endpoint in ("https://s3.example.com", "http://k:s@store:9000", "http://store/p"):
        values = _nginx_values(make_settings(object_store="external", s3_endpoint_url=endpoint))
        assert values["MLOPS_ARTIFACT_STORE_URL"] == "", endpoint
        assert values["MLOPS_ARTIFACT_STORE_SERVER"] == nginx.NO_ARTIFACT_STORE
    aws = _nginx_values(make_settings(object_store="external"))
    assert aws["MLOPS_ARTIFACT_STORE_URL"] == ""
    assert nginx.artifact_store("http://[::1]:9000") == (
        "http://[::1]:9000",
        "[::1]:9000",
        "[::1]:9000",
    )
    assert nginx.artifact_store("http://minio:80/") == ("http://minio:80", "minio:80", "minio")
    # The server hands a download over only to an nginx naming the very store it signs for.
    assert nginx_fetches("http://127.0.0.1:8333", "http://127.0.0.1:8333/")
    assert not nginx_fetches("http://127.0.0.1:9", "http://127.0.0.1:8333")
    assert not nginx_fetches(None, "http://127.0.0.1:8333")
    assert not nginx_fetches("", None)


def test_counter_keys_come_from_nginx_never_from_the_client(settings: PlatformSettings) -> None:
    from mlops_platform.render import nginx

    site = nginx.site_conf(settings, upstream="127.0.0.1:5000", snippets_dir="/p/snippets")
    counter = site.split("server_name mlops-auth-failures;", 1)[0]
    assert "$http_x_mlops_login zone=mlops_failures_login" in counter
    assert "$http_x_mlops_client zone=mlops_failures_client" in counter
    # Both subrequests to the counter send nginx's own values and none of the client's.
    for name in ("/_mlops/lockout", "/_mlops/failed"):
        block = site.split(f"location = {name} {{", 1)[1].split("}", 1)[0]
        assert "proxy_pass_request_headers off;" in block
        assert "proxy_set_header X-Mlops-Client $remote_addr;" in block
        assert 'proxy_set_header X-Mlops-Login "$remote_addr $mlops_login_user";' in block
    health = site.split("location = /health {", 1)[1].split("location", 1)[0]
    assert "proxy_pass_request_headers off;" in health
    for header in ("Authorization", "X-Forwarded-User", "X-Mlops-Proxy-Secret"):
        assert f'proxy_set_header {header} "";' in health


def test_the_two_template_copies_are_identical() -> None:
    from mlops_platform.render import nginx

    compose_copy = Path(__file__).resolve().parents[2] / "nginx" / "templates" / nginx.TEMPLATE_NAME
    assert compose_copy.read_text() == nginx.template_text()


def test_long_state_paths_get_a_private_socket_folder(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    """No fixed name under /tmp: a random 0700 folder, kept across restarts, then removed."""
    import stat

    from mlops_platform.render import nginx
    from mlops_platform.stack.base import StateFile
    from mlops_platform.stack.proxy import Proxy

    assert nginx.auth_fail_socket(Path("/s/tmp")) == "/s/tmp/auth-failures.sock"
    # A short state folder of its own: pytest's own folders grow with its run counter
    # (/tmp/pytest-of-root/pytest-111/...) and may not fit a socket path themselves.
    near = Path(tempfile.mkdtemp(prefix="mlops-s-", dir="/tmp"))
    try:
        short_settings = settings.model_copy(update={"state_dir": near / "state"})
        short = Proxy(short_settings, StateFile.load(short_settings.state_dir))
        assert short.socket_dir() == short.root / "tmp"
    finally:
        shutil.rmtree(near, ignore_errors=True)
    deep = settings.model_copy(update={"state_dir": tmp_path / ("x" * 120)})
    proxy = Proxy(deep, StateFile.load(deep.state_dir))
    first = proxy.socket_dir()
    assert nginx.socket_fits(first) and not str(first).startswith(str(deep.state_dir))
    assert first.name.startswith("mlops-nginx-") and len(first.name) > len("mlops-nginx-")
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    again = Proxy(deep, StateFile.load(deep.state_dir))
    assert again.socket_dir() == first  # remembered in the state file
    again.stop(lambda _msg: None)
    assert not first.exists()
    fresh = Proxy(deep, StateFile.load(deep.state_dir))
    second = fresh.socket_dir()
    assert second != first
    fresh.stop(lambda _msg: None)  # `down` removes it even when nginx never ran
    assert not second.exists()


def test_tls_listen_and_snippet(settings: PlatformSettings, tmp_path: Path) -> None:
    from mlops_platform.render import nginx

    assert nginx.tls_snippet(settings) is None
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    for path in (cert, key):
        path.write_text("-----BEGIN X-----\n")
    tls = settings.model_copy(update={"proxy_tls_cert_file": cert, "proxy_tls_key_file": key})
    assert _nginx_values(tls)["MLOPS_PROXY_LISTEN"] == "127.0.0.1:8080 ssl"
    snippet = nginx.tls_snippet(tls) or ""
    assert f"ssl_certificate {cert};" in snippet and "Strict-Transport-Security" in snippet
    assert not re.search(r"^listen", snippet, re.M)  # no plain port unless asked for
    assert proxy_problems(tls) == []
    both = tls.model_copy(update={"proxy_plain_port": 8081})
    snippet = nginx.tls_snippet(both) or ""
    assert "listen 127.0.0.1:8081;" in snippet and "set $mlops_https_redirect on;" in snippet
    assert 'set $mlops_https_origin "https://$host:8080";' in snippet
    public = both.model_copy(update={"public_url": "https://mlflow.example.com"})
    assert 'set $mlops_https_origin "https://mlflow.example.com";' in (
        nginx.tls_snippet(public) or ""
    )
    assert proxy_problems(both) == []
    ipv6 = both.model_copy(update={"proxy_host": "::"})
    assert "listen [::]:8081;" in (nginx.tls_snippet(ipv6) or "")
    assert _nginx_values(ipv6)["MLOPS_PROXY_LISTEN"] == "[::]:8080 ssl"
    plain_only = settings.model_copy(update={"proxy_plain_port": 8081})
    assert proxy_problems(plain_only) == [
        "MLOPS_PROXY_PLAIN_PORT is set without TLS; the proxy's port is already plain HTTP: "
        "unset it, or set MLOPS_PROXY_TLS_CERT_FILE and _KEY_FILE"
    ]


def test_real_ip_only_for_trusted_load_balancers(
    settings: PlatformSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_platform.render import nginx

    assert nginx.real_ip_snippet(settings) is None
    trusted = PlatformSettings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=settings.state_dir,
        proxy_trusted_proxies=" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32",
        **SECRETS,  # type: ignore[arg-type]
    )
    assert nginx.real_ip_snippet(trusted) == (
        "set_real_ip_from 10.0.0.0/8;\nset_real_ip_from 192.0.2.7;\n"
        "set_real_ip_from 2001:db8::/32;\n"
        "real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n"
    )
    with pytest.raises(ValueError, match="'lb.example' is not an address or CIDR"):
        PlatformSettings(
            _env_file=None,  # type: ignore[call-arg]
            state_dir=settings.state_dir,
            proxy_trusted_proxies="10.0.0.0/8,lb.example",
        )


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "is not a readable file"), ("not a certificate", "is not PEM"), ("dir", "readable")],
)
def test_tls_file_problems_are_reported(
    settings: PlatformSettings, tmp_path: Path, content: str | None, expected: str
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    if content == "dir":
        cert.mkdir()
    elif content is not None:
        cert.write_text(content)
    tls = settings.model_copy(update={"proxy_tls_cert_file": cert, "proxy_tls_key_file": key})
    problems = proxy_problems(tls)
    assert len(problems) == 1 and problems[0].startswith(f"MLOPS_PROXY_TLS_CERT_FILE={cert} ")
    assert expected in problems[0]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw", "shorter than 12"),
        ("aaaaaaaaaaaaaaaa", "fewer than 5"),
        ("MyPassword2024!", "'password'"),
        ("alice-is-great-42", "user name"),
        ("xx-123456789-zz", "'123456'"),
        ("hello-qwerty-you", "'qwerty'"),
        ("90817263549081", "digits only"),
        (" leading-blank-x", "blanks"),
    ],
)
def test_weak_passwords_are_refused(password: str, reason: str) -> None:
    from mlops_platform.users import weakness

    found = weakness(password, "alice")
    assert found is not None and reason in found


def test_good_passwords_pass() -> None:
    from mlops_platform.users import generate_password, weakness

    assert weakness("Zq7-kT2p-Wm9x-Lr4v", "alice") is None
    assert weakness(generate_password(), "alice") is None


def test_users_add_remove_list(settings: PlatformSettings) -> None:
    from mlops_platform import users
    from mlops_platform.errors import ConfigError

    # The password file alone; MLflow's user store is tests/integration/test_permissions.py's.
    settings = settings.model_copy(update={"auth_enabled": False})

    result = users.add_user(settings, "alice", "Zq7-kT2p-Wm9x-Lr4v")
    path = settings.users_file
    assert result.users_file == path and result.generated_password is None
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert "Zq7-kT2p" not in path.read_text()
    assert htpasswd.verify(htpasswd.parse(path.read_text())["alice"], "Zq7-kT2p-Wm9x-Lr4v")
    generated = users.add_user(settings, "bob", None).generated_password
    assert generated and len(generated) == 32
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        users.add_user(settings, "alice", "Another-Good-Pass-93")
    with pytest.raises(ConfigError, match="shorter than 12"):
        users.add_user(settings, "carol", "short")
    with pytest.raises(ConfigError, match="MLOPS_PROXY_USER"):
        users.remove_user(settings, settings.proxy_user)
    assert path.read_bytes() == before
    assert [(u.name, u.scheme) for u in users.list_users(settings)] == [
        ("alice", "{SSHA}"),
        ("bob", "{SSHA}"),
    ]
    assert users.remove_user(settings, "alice").removed
    assert not users.remove_user(settings, "alice").removed
    assert [u.name for u in users.list_users(settings)] == ["bob"]
    assert sorted(p.name for p in path.parent.iterdir()) == [".htpasswd.lock", "htpasswd"]


def test_cors_origin_is_the_public_urls_origin_without_its_path() -> None:
    from mlops_platform.render.server import public_origin, server_argv

    assert public_origin("https://mlflow.example.com/team-a/") == "https://mlflow.example.com"
    assert public_origin("http://localhost:8080") == "http://localhost:8080"
    settings = PlatformSettings(
        _env_file=None, env="dev", public_url="https://mlflow.example.com:8443/mlflow"
    )
    argv = server_argv(settings)
    assert argv[argv.index("--cors-allowed-origins") + 1] == "https://mlflow.example.com:8443"
