"""Renderers are pure: settings in, argv / env / files out."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlops_platform.render import htpasswd
from mlops_platform.render.envfile import env_file_text
from mlops_platform.render.server import client_env, server_argv, server_env
from mlops_platform.settings import PlatformSettings

SECRETS = {
    "db_password": "db-secret-value-1234",
    "s3_access_key_id": "MLOPSKEYID12345",
    "s3_secret_access_key": "s3-secret-value-1234",
    "flask_secret_key": "flask-secret-value-1234",
    "proxy_password": "proxy-secret-value-1234",
}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    for key in list(os.environ):
        if key.upper().startswith("MLOPS_"):
            monkeypatch.delenv(key)
    return PlatformSettings(_env_file=None, state_dir=tmp_path, **SECRETS)  # type: ignore[call-arg]


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
