"""Monitoring, the scripts the services run, `compose status` and init's env file."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mlops_platform import containers
from mlops_platform.render import envexample
from tests.static.compose.support import ROOT, raw, run_compose, run_script
from tests.support.proc import clean_env, run_cli, run_with_path

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


def test_backup_loop_healthcheck_follows_the_last_run(tmp_path: Path) -> None:
    env = {"MLOPS_BACKUP_DIR": str(tmp_path)}
    assert run_script("backup-loop", "--check", env=env).returncode == 0  # before the first run
    status = tmp_path / ".backup-loop-status"
    status.write_text("failed 2026-01-01T02:30:00Z\n")
    failed = run_script("backup-loop", "--check", env=env)
    assert failed.returncode == 1 and "last backup failed" in failed.stderr
    status.write_text("ok 2026-01-02T02:30:00Z\n")
    assert run_script("backup-loop", "--check", env=env).returncode == 0


def test_backup_loop_refuses_a_bad_time(tmp_path: Path) -> None:
    result = run_script("backup-loop", env={"MLOPS_BACKUP_DIR": str(tmp_path), "BACKUP_AT": "2am"})
    assert result.returncode == 2 and "BACKUP_AT=2am" in result.stderr


@pytest.mark.parametrize("key", ['ab"c', "ab\\c", ""])
def test_seaweedfs_start_refuses_unsafe_or_missing_keys(key: str) -> None:
    result = run_script(
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
    result = run_script("seaweedfs-start", env={**files, "S3_ACCESS_KEY_ID": "SAFEKEY12345"})
    assert result.returncode == 2 and "quotes or backslashes" in result.stderr
    missing = {**files, "S3_ACCESS_KEY_ID_FILE": str(tmp_path / "absent")}
    assert run_script("seaweedfs-start", env=missing).returncode != 0


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
    env = clean_env(DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    result = run_cli("compose", "status", env=env, cwd=tmp_path)
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
    result = run_with_path(["sh", "-c", script], {"GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret)})
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
