"""The values of the rendered Kubernetes overlay: pure functions, no kubectl.

Built overlays are tested in tests/static/kustomize/.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mlops_platform.errors import ConfigError
from mlops_platform.render import k8s, nginx
from mlops_platform.settings import SECRET_FIELDS, PlatformSettings
from tests.unit.conftest import SECRETS as UNIT_SECRETS

ROOT = Path(__file__).resolve().parents[2]
SECRETS: dict[str, Any] = {
    **UNIT_SECRETS,
    "proxy_secret": "proxy-shared-secret-value-0123456789abcdef",
    "kek_passphrase": "kek-passphrase-value-0123456789",
}


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(
        db_url="postgresql://mlflow:url-password-987654@db.internal:6432/mlflow",
        object_store="external",
        s3_endpoint_url="https://s3.internal:9000",
        public_url="https://mlflow.corp.example",
        **SECRETS,
    )


def test_the_template_renders_with_the_sidecar_values(settings: PlatformSettings) -> None:
    proxy_env = k8s.nginx_env(settings)
    text = nginx.substitute(
        nginx.template_text(), {**proxy_env, "MLOPS_PROXY_SECRET": SECRETS["proxy_secret"]}
    )
    assert not re.search(r"\$\{MLOPS_[A-Z0-9_]+\}", text)
    assert f"server 127.0.0.1:{settings.server_port};" in text
    assert f"listen {k8s.NGINX_PORT};" in text
    assert f'X-Mlops-Proxy-Secret "{SECRETS["proxy_secret"]}"' in text


def test_the_sidecar_nginx_starts_from_its_secret_file(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    """The pod's entrypoint snippet reads the mounted secret for the template step."""
    secret = tmp_path / "proxy_secret"
    secret.write_text(SECRETS["proxy_secret"] + "\n")
    env = {**k8s.nginx_env(settings), "MLOPS_PROXY_SECRET_FILE": str(secret)}
    result = subprocess.run(
        [
            "sh",
            "-c",
            f'. "{ROOT / "scripts" / "nginx-proxy-secret"}" && echo "$MLOPS_PROXY_SECRET"',
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == SECRETS["proxy_secret"]


def test_nginx_accepts_the_sidecar_rendering(settings: PlatformSettings, tmp_path: Path) -> None:
    """nginx -t on the pod's rendering: no snippets folder (TLS ends at the Ingress).

    The writable paths of the image (cache, socket, password file) move under tmp_path;
    everything else is the sidecar's environment.
    """
    from tests.support.nginx import check_site, nginx_binary

    nginx_binary()  # fails first, saying how to install it
    for sub in ("conf.d", "logs", "tmp"):
        (tmp_path / sub).mkdir()
    env = k8s.nginx_env(settings)
    assert not Path(env["MLOPS_NGINX_SNIPPETS"]).exists()
    env.update(
        MLOPS_LOCKOUT_CACHE=str(tmp_path / "tmp" / "lockout"),
        MLOPS_AUTH_FAIL_SOCKET=str(tmp_path / "tmp" / "auth.sock"),
        MLOPS_USERS_FILE=str(tmp_path / "htpasswd"),
        MLOPS_ACCESS_LOG=str(tmp_path / "logs" / "access.log"),
        MLOPS_PROXY_SECRET=SECRETS["proxy_secret"],
    )
    env.pop("MLOPS_PROXY_SECRET_FILE")
    result = check_site(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_workload_is_given_only_the_secrets_it_uses(settings: PlatformSettings) -> None:
    assert "proxy_password" not in k8s.TRACKING_SECRET_KEYS + k8s.BACKUP_SECRET_KEYS
    assert k8s.secret_keys(settings, k8s.TRACKING_SECRET_KEYS) == k8s.TRACKING_SECRET_KEYS
    irsa = settings.model_copy(
        update={"s3_access_key_id": SecretStr(""), "s3_secret_access_key": SecretStr("")}
    )
    assert set(k8s.secret_keys(irsa, k8s.TRACKING_SECRET_KEYS)) == set(
        k8s.TRACKING_SECRET_KEYS
    ) - set(k8s.S3_KEYS)
    not_needed = set(k8s.not_needed(k8s.MIGRATE_SECRET_KEYS).split(","))
    assert not_needed == set(SECRET_FIELDS) - {"db_password"}
    commands = " ".join(k8s.secret_commands(settings, k8s.K8sOptions()))
    for key in k8s.TRACKING_SECRET_KEYS:
        assert f"--from-file={key}=" in commands
    assert "--from-file=proxy_password" not in commands
    assert k8s.HTPASSWD_SECRET in commands and k8s.SERVING_SECRET in commands


def test_the_database_url_keeps_its_query_never_its_password(settings: PlatformSettings) -> None:
    verify = settings.model_copy(
        update={
            "db_url": "postgresql://ml%40user:pw-1234@db.internal:6432/mlflow?sslmode=verify-full"
        }
    )
    assert k8s.database_url(verify) == (
        "postgresql://ml%40user@db.internal:6432/mlflow?sslmode=verify-full"
    )
    parts = settings.model_copy(
        update={"db_url": None, "db_host": "pg.internal", "db_port": 5433, "db_name": "ml"}
    )
    assert k8s.database_url(parts) == "postgresql://mlflow@pg.internal:5433/ml"


@pytest.mark.parametrize(
    ("update", "variable"),
    [
        ({"db_url": "postgresql://mlflow@127.0.0.1:5432/mlflow"}, "MLOPS_DB_URL"),
        ({"db_url": None, "db_host": "localhost"}, "MLOPS_DB_HOST"),
        ({"public_url": None}, "MLOPS_PUBLIC_URL"),
        ({"public_url": "https://localhost:8443"}, "MLOPS_PUBLIC_URL"),
        ({"object_store": "seaweedfs", "s3_endpoint_url": None}, "MLOPS_OBJECT_STORE"),
        ({"s3_endpoint_url": "http://localhost:8333"}, "MLOPS_S3_ENDPOINT_URL"),
        ({"db_pool_size": 40, "server_workers": 4}, "MLOPS_DB_MAX_CONNECTIONS"),
    ],
)
def test_local_only_settings_are_refused(
    settings: PlatformSettings, update: dict[str, object], variable: str
) -> None:
    k8s.check(settings, k8s.K8sOptions())  # the fixture's settings are a cluster's
    bad = settings.model_copy(update=update)
    with pytest.raises(ConfigError) as caught:
        k8s.render(bad)
    assert variable in str(caught.value)
    assert "\n" not in str(caught.value)
