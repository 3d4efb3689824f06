"""Issue 16, part one: what breaks a first `docker compose up`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from mlops_platform.render import nginx
from tests.static.compose.support import (
    ROOT,
    TEST_SECRET,
    artifact_store_values,
    filled_example,
    raw,
    run_compose,
    run_script,
    tmpfs_targets,
)
from tests.support.stacks import scratch_dir

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
    check = run_script(
        "serving-wait", "--check", env={"SERVING_STATE_FILE": str(tmp_path / "waiting")}
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
    values = {**env, **artifact_store_values(env), "MLOPS_PROXY_SECRET": TEST_SECRET}
    text = nginx.substitute(nginx.template_text(), values)
    block = text.split("upstream mlflow_tracking {", 1)[1].split("}", 1)[0]
    directives = [d.strip() for d in re.sub(r"#[^\n]*", "", block).split(";") if d.strip()]
    assert "server mlflow-upstream:5000 resolve" in directives
    assert "zone mlflow_tracking 64k" in directives
    assert "resolver 127.0.0.11 valid=10s ipv6=off" in directives
    assert "keepalive 32" in directives  # upstream keep-alive stays (docs/performance.md)
    # nginx 1.27.3 brought `resolve` to open source: the pinned image must be newer.
    tag = model["services"]["nginx"]["image"].split(":", 1)[1].split("-", 1)[0]
    assert tuple(map(int, tag.split("."))) >= (1, 27, 3)


def test_the_lockout_socket_and_cache_live_on_a_tmpfs(model: dict) -> None:
    """A socket left in the container layer by `docker kill` stops nginx from binding it."""
    nginx_service = model["services"]["nginx"]
    env = nginx_service["environment"]
    tmpfs = tmpfs_targets(nginx_service)
    for key in ("MLOPS_AUTH_FAIL_SOCKET", "MLOPS_LOCKOUT_CACHE"):
        assert any(env[key].startswith(path + "/") for path in tmpfs), f"{key}={env[key]}"
    options = tmpfs[str(Path(env["MLOPS_AUTH_FAIL_SOCKET"]).parent)]
    assert "uid=101" in options and "mode=0700" in options  # the image's nginx user only


def test_seaweedfs_runs_as_nobody_and_logs_to_stderr() -> None:
    """scripts/seaweedfs-start reads the keys as root, then runs weed as SEAWEEDFS_USER with
    glog on stderr (no files in /tmp)."""
    if os.getuid() != 0:
        pytest.skip("the privilege drop needs root, as in the container")
    with scratch_dir("sw-") as top:  # nobody must traverse it: not pytest's 0700 tmp_path
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
        result = run_script("seaweedfs-start", env=env)
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
    env = {"NGINX_CONF": str(conf), "MLOPS_CGROUP_ROOT": str(cgroup)}
    result = run_script("nginx-worker-processes", env=env)
    assert result.returncode == 0, result.stderr
    online = os.cpu_count() or 1
    expected = min(want, online) if want else online
    assert f"worker_processes {expected};" in conf.read_text()
