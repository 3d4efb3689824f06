"""docker-compose.yaml brought up for real on a Docker engine (marker `compose`).

One stack per module: `mlops-platform init` writes the env file and the proxy's password
file, compose builds the images and starts the default profile, `--wait` waits for every
healthcheck. Then a client logs through the published nginx port like any user.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.compose.conftest import docker_engine_problem
from tests.conftest import free_port
from tests.support.proc import clean_env, run_cli

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    problem = docker_engine_problem()
    if problem:
        pytest.fail(f"{problem}: these tests need a running Docker engine", pytrace=False)
    try:
        from testcontainers.compose import DockerCompose
    except ImportError:
        pytest.fail("testcontainers is not installed: pip install -e '.[compose]'", pytrace=False)
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / ".env"
    state = folder / "state"
    env = clean_env(MLOPS_STATE_DIR=str(state))
    done = run_cli("--env-file", str(env_file), "init", "--json", env=env)
    assert done.returncode == 0, done.stderr
    port, https_port = free_port(), free_port()
    with env_file.open("a") as out:
        out.write(
            f"MLOPS_STATE_DIR={state}\nMLOPS_PROXY_PORT={port}\nHTTPS_PORT={https_port}\n"
            f"COMPOSE_PROFILES=seaweedfs\nGRAFANA_ADMIN_PASSWORD={secrets.token_hex(16)}\n"
        )
    values = {}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    compose = DockerCompose(
        context=str(ROOT),
        compose_file_name="docker-compose.yaml",
        env_file=str(env_file),
        build=True,
        wait=True,
        profiles=["seaweedfs"],
    )
    with compose:
        yield {
            "compose": compose,
            "url": f"http://127.0.0.1:{port}",
            "user": values["MLOPS_PROXY_USER"],
            "password": values["MLOPS_PROXY_PASSWORD"],
        }


def test_every_service_is_healthy_and_init_succeeded(stack: dict[str, Any]) -> None:
    containers = stack["compose"].get_containers(include_all=True)
    state = {c.Service: c for c in containers}
    assert {"postgres", "seaweedfs", "init", "tracking", "nginx"} <= set(state)
    for name in ("postgres", "seaweedfs", "tracking", "nginx"):
        assert state[name].Health == "healthy", f"{name}: {state[name]}"
    assert state["init"].ExitCode == 0, state["init"]


def test_proxy_refuses_anonymous_and_accepts_the_user(stack: dict[str, Any]) -> None:
    api = f"{stack['url']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(api, timeout=30).status_code == 401
    authed = requests.get(api, auth=(stack["user"], stack["password"]), timeout=30)
    assert authed.status_code == 200, authed.text
    assert requests.get(f"{stack['url']}/-/proxy-health", timeout=30).status_code == 200


def test_client_workload_through_the_proxy(
    stack: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack["user"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack["password"])
    client = mlflow.MlflowClient(tracking_uri=stack["url"])
    experiment = client.create_experiment(f"compose-{secrets.token_hex(4)}")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    for step in range(20):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.log_text(run_id, "hello from compose\n", "notes/hello.txt")
    client.set_terminated(run_id)

    got = client.get_run(run_id)
    assert got.data.params == {"alpha": "0.5"}
    assert len(client.get_metric_history(run_id, "loss")) == 20
    local = client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
    assert Path(local).read_text() == "hello from compose\n"


def test_compose_status_reads_the_same_health(stack: dict[str, Any]) -> None:
    result = run_cli("compose", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    services = {row["service"]: row["status"] for row in report["services"]}
    assert services["init"] == "completed" and services["tracking"] == "healthy"


def test_only_nginx_reaches_the_tracking_server(stack: dict[str, Any]) -> None:
    """The server listens on the `proxy` network only (nginx's and its own)."""
    compose = stack["compose"]
    out, err, code = compose.exec_in_container(
        ["wget", "-q", "-O", "-", "http://mlflow-upstream:5000/health"], service_name="nginx"
    )
    assert code == 0 and "OK" in out, err
    # postgres shares `backend` with the tracking server, which does not listen there.
    probe = "exec 3<>/dev/tcp/tracking/5000 && echo connected"
    out, err, code = compose.exec_in_container(["bash", "-c", probe], service_name="postgres")
    assert code != 0 and "connected" not in out


def test_secrets_are_files_not_environment_variables(stack: dict[str, Any]) -> None:
    compose = stack["compose"]
    env, _, code = compose.exec_in_container(["env"], service_name="tracking")
    assert code == 0
    assert stack["password"] not in env and "MLOPS_DB_PASSWORD" not in env
    listed, _, code = compose.exec_in_container(["ls", "/run/secrets"], service_name="tracking")
    assert code == 0 and "db_password" in listed.split()
    assert "proxy_password" not in listed.split()  # the admin's stays on the host


@pytest.mark.parametrize("service", ["postgres", "seaweedfs", "tracking", "nginx"])
def test_a_restart_of_each_service_keeps_runs_and_the_platform_recovers(
    stack: dict[str, Any], service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker compose restart SERVICE`, then `up --wait`: what was logged before is still
    there (metadata and artifact), and a client writes again through the proxy (nginx
    re-resolves a recreated tracking server; the server reconnects to PostgreSQL)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack["user"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack["password"])
    client = mlflow.MlflowClient(tracking_uri=stack["url"])
    run_id = client.create_run(
        client.create_experiment(f"restart-{service}-{secrets.token_hex(3)}")
    ).info.run_id
    client.log_metric(run_id, "before", 1.0)
    client.log_text(run_id, f"before {service}\n", "notes/before.txt")

    compose = stack["compose"]
    base = compose.compose_command_property
    compose._run_command([*base, "restart", service])
    compose._run_command([*base, "up", "--wait", "--no-recreate"])

    client.log_metric(run_id, "after", 2.0)  # the platform takes writes again
    got = client.get_run(run_id)
    assert got.data.metrics == {"before": 1.0, "after": 2.0}
    local = client.download_artifacts(run_id, "notes/before.txt", str(tmp_path))
    assert Path(local).read_text() == f"before {service}\n"
