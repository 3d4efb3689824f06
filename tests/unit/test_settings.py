"""Settings: sources, priorities, validation and the safety checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_platform.errors import ConfigError
from mlops_platform.settings import PlatformSettings, load_settings, unknown_variables
from tests.conftest import clear_mlops_env

STRONG = {
    "MLOPS_DB_PASSWORD": "db-password-0123456789",
    "MLOPS_S3_ACCESS_KEY_ID": "MLOPSKEY0123456789",
    "MLOPS_S3_SECRET_ACCESS_KEY": "s3-secret-0123456789abcdef",
    "MLOPS_FLASK_SECRET_KEY": "flask-secret-0123456789",
    "MLOPS_PROXY_PASSWORD": "proxy-password-0123456789",
    "MLOPS_S3_ADMIN_ACCESS_KEY_ID": "MLOPSADMIN0123456789",
    "MLOPS_S3_ADMIN_SECRET_ACCESS_KEY": "s3-admin-secret-0123456789abcdef",
    "MLOPS_S3_BACKUP_ACCESS_KEY_ID": "MLOPSBACKUP0123456789",
    "MLOPS_S3_BACKUP_SECRET_ACCESS_KEY": "s3-backup-secret-0123456789abcdef",
    "MLOPS_KEK_PASSPHRASE": "kek-passphrase-0123456789abcdef",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    clear_mlops_env(monkeypatch)
    monkeypatch.setenv("MLOPS_SECRETS_DIR", str(tmp_path / "no-secrets"))
    # Even dev needs it (the server would trust nobody); tests of its absence unset it.
    monkeypatch.setenv("MLOPS_PROXY_SECRET", "proxy-secret-" + "0" * 40)
    monkeypatch.chdir(tmp_path)


def strong(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in STRONG.items():
        monkeypatch.setenv(key, value)


def refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, match: str, **env: str) -> None:
    """Strong settings changed by ENV: `load_settings` refuses them, saying MATCH."""
    strong(monkeypatch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=match):
        load_settings(tmp_path / "missing.env")


def test_defaults_are_refused_outside_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "missing.env")
    message = str(err.value)
    for var in STRONG:
        assert var in message
    assert "mlops-platform init" in message


def test_dev_accepts_placeholders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ENV", "dev")
    monkeypatch.setenv("MLOPS_DB_PASSWORD", "changethis")
    monkeypatch.setenv("MLOPS_PROXY_SECRET", "changethis")
    assert load_settings(tmp_path / "missing.env").is_dev


def test_dev_still_needs_a_proxy_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ENV", "dev")
    monkeypatch.delenv("MLOPS_PROXY_SECRET")
    with pytest.raises(ConfigError, match="MLOPS_PROXY_SECRET is empty"):
        load_settings(tmp_path / "missing.env")
    monkeypatch.setenv("MLOPS_AUTH_ENABLED", "false")
    assert not load_settings(tmp_path / "missing.env").identity_enabled


@pytest.mark.parametrize("value", ["changethis", "", "password", "CHANGETHIS"])
def test_placeholder_secret_refused(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused(monkeypatch, tmp_path, "MLOPS_S3_SECRET_ACCESS_KEY", MLOPS_S3_SECRET_ACCESS_KEY=value)


def test_short_admin_password_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    match = "MLOPS_PROXY_PASSWORD is shorter than 12"
    refused(monkeypatch, tmp_path, match, MLOPS_PROXY_PASSWORD="elevenchars")


def test_env_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong(monkeypatch)
    env_file = tmp_path / "x.env"
    env_file.write_text("MLOPS_SERVER_PORT=5123\nMLOPS_PROXY_PORT=8123\n")
    monkeypatch.setenv("MLOPS_PROXY_PORT", "8999")
    settings = load_settings(env_file)
    assert settings.server_port == 5123
    assert settings.proxy_port == 8999


def test_secret_files_win_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    strong(monkeypatch)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "db_password").write_text("from-the-secret-file-123\n")
    monkeypatch.setenv("MLOPS_SECRETS_DIR", str(secrets))
    settings = load_settings(tmp_path / "missing.env")
    assert settings.db_password.get_secret_value() == "from-the-secret-file-123"


def test_secret_file_that_is_a_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "proxy_password").mkdir(parents=True)
    refused(monkeypatch, tmp_path, "is a directory", MLOPS_SECRETS_DIR=str(secrets))


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MLOPS_SERVER_PORT", "http", "MLOPS_SERVER_PORT"),
        ("MLOPS_SERVER_PORT", "70000", "less than or equal to 65535"),
        ("MLOPS_ARTIFACT_MODE", "sideways", "MLOPS_ARTIFACT_MODE"),
        ("MLOPS_S3_BUCKET", "Bad_Bucket", "lowercase"),
        ("MLOPS_PROXY_BODY_SIZE", "lots", "k, m or g"),
        ("MLOPS_DB_URL", "sqlite:///mlflow.db", "SQLite is not supported"),
        ("MLOPS_PUBLIC_URL", "ftp://x", "http:// or https://"),
        ("MLOPS_S3_PREFIX", "../up", "key prefix"),
        ("MLOPS_SERVER_WORKERS", "-1", "MLOPS_SERVER_WORKERS"),
    ],
)
def test_malformed_values_name_the_variable(
    var: str, value: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused(monkeypatch, tmp_path, expected, **{var: value})


def test_same_port_twice_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    match = "MLOPS_PROXY_PORT and MLOPS_SERVER_PORT are both 5000"
    refused(monkeypatch, tmp_path, match, MLOPS_PROXY_PORT="5000")


def test_disk_failure_line_below_the_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    match = "MLOPS_DISK_FAIL_FREE_PERCENT=12 is not below MLOPS_DISK_WARN_FREE_PERCENT=10"
    refused(monkeypatch, tmp_path, match, MLOPS_DISK_FAIL_FREE_PERCENT="12")


def test_tls_needs_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    refused(monkeypatch, tmp_path, "must be set together", MLOPS_PROXY_TLS_CERT_FILE=str(cert))


def test_bare_postgresql_url_gets_an_explicit_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong(monkeypatch)
    monkeypatch.setenv(
        "MLOPS_DB_URL", "postgresql://ml:p%40ss@db.example:6543/track?sslmode=require"
    )
    settings = load_settings(tmp_path / "missing.env")
    assert settings.external_db
    assert settings.database_url() == (
        "postgresql+psycopg://ml@db.example:6543/track?sslmode=require"
    )
    assert settings.database_url(with_password=True) == (
        "postgresql+psycopg://ml:p%40ss@db.example:6543/track?sslmode=require"
    )
    assert "p%40ss" not in str(settings.redacted())


def test_password_with_special_characters_is_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong(monkeypatch)
    monkeypatch.setenv("MLOPS_DB_PASSWORD", "a@b:c/d%e f-long-enough")
    url = load_settings(tmp_path / "missing.env").database_url(with_password=True)
    assert url.startswith("postgresql+psycopg://mlflow:a%40b%3Ac%2Fd%25e%20f-long-enough@")


def test_redacted_hides_every_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    strong(monkeypatch)
    shown = str(load_settings(tmp_path / "missing.env").redacted())
    for value in STRONG.values():
        assert value not in shown


def test_allowed_hosts_carry_the_public_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong(monkeypatch)
    monkeypatch.setenv("MLOPS_PUBLIC_URL", "https://mlflow.example.com")
    monkeypatch.setenv("MLOPS_ALLOWED_HOSTS", "alias.example.com, other:81")
    hosts = load_settings(tmp_path / "missing.env").allowed_host_list()
    assert hosts[0] == "mlflow.example.com"
    assert "alias.example.com" in hosts and "other:81" in hosts


def test_unknown_variables_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MLOPS_DB_PASWORD=x\nMLOPS_SERVER_PORT=5001\n")
    monkeypatch.setenv("MLOPS_PROXY_PROT", "1")
    assert unknown_variables(env_file) == ["MLOPS_DB_PASWORD", "MLOPS_PROXY_PROT"]


def test_every_field_is_documented() -> None:
    for name, field in PlatformSettings.model_fields.items():
        assert field.description, f"{name} has no description"


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 2), (3, 3), (4, 4), (16, 4)])
def test_workers_default_to_the_cores_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    assert PlatformSettings(_env_file=None, env="dev", server_workers=0).workers == workers
    assert PlatformSettings(_env_file=None, env="dev", server_workers=6).workers == 6


def test_pools_that_could_exhaust_postgres_are_refused() -> None:
    fine = PlatformSettings(_env_file=None, env="dev", server_workers=4)
    assert not any("MLOPS_DB_POOL_SIZE" in p for p in fine.problems())  # 4 x 10 + 10 <= 100
    greedy = PlatformSettings(
        _env_file=None, env="dev", server_workers=8, db_pool_size=10, db_pool_max_overflow=5
    )
    (problem,) = [p for p in greedy.problems() if "MLOPS_DB_POOL_SIZE" in p]
    assert "120 database connections" in problem and "MLOPS_DB_MAX_CONNECTIONS=100" in problem


def test_the_connection_budget_counts_every_replica() -> None:
    one = PlatformSettings(_env_file=None, env="dev", server_workers=4, server_replicas=1)
    assert not any("MLOPS_DB_POOL_SIZE" in p for p in one.problems())  # 4 x 10 + 10 <= 100
    three = PlatformSettings(_env_file=None, env="dev", server_workers=4, server_replicas=3)
    (problem,) = [p for p in three.problems() if "MLOPS_DB_POOL_SIZE" in p]
    assert "120 database connections" in problem and "MLOPS_SERVER_REPLICAS 3 x" in problem
