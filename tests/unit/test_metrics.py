"""The kit's exporter without processes: caching and ages, the access log counter, the
scrape text, and the rendered Prometheus configuration and nginx status location."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry

from mlops_platform import metrics
from mlops_platform.render import prometheus as render
from mlops_platform.settings import PlatformSettings
from tests.support.promql import JOBS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings], tmp_path: Path) -> PlatformSettings:
    return make_settings(
        env="dev",
        state_dir=tmp_path / "state",
        monitoring=True,
        proxy_password="proxy-password-for-the-test",
        db_password="db-password-for-the-test",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: metrics.PlatformCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_scrapes_read_the_cache_and_expose_its_age(settings: PlatformSettings) -> None:
    calls = []

    def group(s: PlatformSettings) -> list[metrics.Sample]:
        calls.append(1)
        return [metrics.Sample("tracking_objects", 42.0, {"kind": "runs"})]

    clock = Clock()
    collector = metrics.PlatformCollector(
        settings, groups={"inventory": group}, intervals={"inventory": 300}, clock=clock
    )
    assert collector.due() == ["inventory"]
    collector.refresh_due()
    clock.now += 30
    first, second = scrape(collector), scrape(collector)
    assert len(calls) == 1  # scrapes never collect
    assert 'mlops_tracking_objects{kind="runs"} 42.0' in first
    assert 'mlops_collect_age_seconds{group="inventory"} 30.0' in first
    assert 'mlops_collect_success{group="inventory"} 1.0' in second
    assert collector.due() == []  # not again before its interval
    assert 'mlops_disk_free_ratio{path="state folder"}' in first


def test_a_failed_collection_keeps_the_old_values_and_says_so(settings: PlatformSettings) -> None:
    results: list[object] = [[metrics.Sample("bucket_objects", 7.0)], RuntimeError("store down")]

    def group(s: PlatformSettings) -> list[metrics.Sample]:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[return-value]

    clock = Clock()
    collector = metrics.PlatformCollector(settings, groups={"storage": group}, clock=clock)
    collector.refresh("storage")
    clock.now += 600
    state = collector.refresh("storage")
    assert not state.ok and "store down" in state.error
    text = scrape(collector)
    assert "mlops_bucket_objects 7.0" in text
    assert 'mlops_collect_success{group="storage"} 0.0' in text
    assert 'mlops_collect_age_seconds{group="storage"} 600.0' in text


def test_subprocess_runner_reads_the_once_json(tmp_path: Path) -> None:
    script = tmp_path / "collect.py"
    out = {
        "groups": {
            "checks": {
                "ok": True,
                "error": "",
                "seconds": 1.5,
                "samples": [
                    {
                        "name": "check_status",
                        "labels": {"component": "s3", "check": "bucket"},
                        "value": 2,
                    }
                ],
            },
            "backup": {"ok": False, "error": "BackupError: no folder", "seconds": 0, "samples": []},
        }
    }
    script.write_text(f"print({json.dumps(json.dumps(out))})")
    import sys

    run = metrics.subprocess_runner([sys.executable, str(script)])
    got = run(["checks", "backup"])
    samples, error, seconds = got["checks"]
    assert samples == [metrics.Sample("check_status", 2.0, {"component": "s3", "check": "bucket"})]
    assert got["backup"][0] is None and "no folder" in got["backup"][1]
    broken = metrics.subprocess_runner([sys.executable, "-c", "import sys; sys.exit('boom')"])
    assert "boom" in broken(["checks"])["checks"][1]


def test_access_log_counts_lockouts_apart_from_rate_limits(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('{"status":429,"rate_limit":"PASSED"}\n')  # before the start: not counted

    def line(status: int, limit: str = "PASSED") -> str:
        return json.dumps({"time": "t", "status": status, "rate_limit": limit}).replace(" ", "")

    counter = metrics.AccessLogCounter(log)
    with log.open("a") as f:
        f.write("\n".join([line(200), line(429), line(429, "REJECTED"), line(401)]) + "\n")
        f.write(line(429)[:10])  # half a line: waits for the rest
    counter.update()
    assert (counter.lockouts, counter.rate_limited) == (1, 1)
    assert counter.responses == {"2xx": 1, "4xx": 3}
    with log.open("a") as f:
        f.write(line(429)[10:] + "\n")
    counter.update()
    assert counter.lockouts == 2
    log.write_text(line(429) + "\n")  # rotated: read from the start of the new file
    counter.update()
    assert counter.lockouts == 3


def test_prometheus_config_names_every_target_with_its_service(settings: PlatformSettings) -> None:
    ports = {"metrics": 1001, "postgres-exporter": 1002, "nginx-exporter": 1003, "seaweedfs": 1004}
    targets = render.local_targets(settings, ports, password_file=Path("/x/pw"))
    config = render.prometheus_config(targets, ["/x/rules/mlops-platform.yml"])
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == JOBS
    for job in jobs.values():
        assert job["static_configs"][0]["labels"]["service"]
    tracking = jobs["mlflow-tracking"]
    assert tracking["basic_auth"] == {"username": settings.proxy_user, "password_file": "/x/pw"}
    assert tracking["static_configs"][0]["targets"] == [f"127.0.0.1:{settings.proxy_port}"]
    assert config["rule_files"] == ["/x/rules/mlops-platform.yml"]
    text = render.prometheus_yaml(config)
    assert settings.proxy_password.get_secret_value() not in text
    assert yaml.safe_load(text) == config
    dsn = render.postgres_exporter_dsn(settings)
    argv = render.postgres_exporter_argv("/usr/bin/prometheus-postgres-exporter", 1002)
    assert settings.db_password.get_secret_value() in dsn
    assert not any("postgresql" in a for a in argv)  # the password stays out of `ps`


def test_compose_prometheus_loads_the_same_rules() -> None:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    loaded = {Path(r).name for r in config["rule_files"]}
    shipped = {p.name for p in (ROOT / "monitoring" / "rules").glob("*.yml")} - {"tests.yml"}
    assert loaded == shipped
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    folder = str(Path(config["rule_files"][0]).parent)
    assert f"./monitoring/rules:{folder}:ro" in mounts


def test_nginx_status_page_is_loopback_only(settings: PlatformSettings) -> None:
    snippet = render.nginx_status_snippet(settings)
    assert f"location = {render.NGINX_STATUS_PATH} {{" in snippet
    assert "stub_status;" in snippet and "auth_basic off;" in snippet
    # the TCP peer, not a real-ip rewrite of it, must be loopback; anyone else gets 404
    assert '$realip_remote_addr !~ "^(127\\.0\\.0\\.1|::1)$"' in snippet
    assert "return 404;" in snippet
    assert "proxy_pass" not in snippet and "proxy_set_header" not in snippet
    off = settings.model_copy(update={"monitoring": False})
    assert render.nginx_status_snippet(off) == ""
    assert render.nginx_status_uri(settings).endswith(f":{settings.proxy_port}/-/nginx-status")


def test_lean_groups_run_here_and_the_others_in_the_child(settings: PlatformSettings) -> None:
    ran_here: list[str] = []
    asked: list[list[str]] = []

    def here(name: str):  # type: ignore[no-untyped-def]
        def group(s: PlatformSettings) -> list[metrics.Sample]:
            ran_here.append(name)
            return [metrics.Sample("bucket_objects", 1.0)]

        return group

    def runner(names: list[str]) -> dict[str, tuple[list[metrics.Sample] | None, str, float]]:
        asked.append(names)
        return {n: ([metrics.Sample("backups", 2.0)], "", 0.1) for n in names}

    groups = {name: here(name) for name in metrics.GROUPS}
    collector = metrics.PlatformCollector(
        settings, groups=groups, runner=runner, remote={"checks", "backup"}
    )
    states = collector.refresh_due()
    assert sorted(ran_here) == ["inventory", "storage"]
    assert asked == [["checks", "backup"]]  # one child for both
    assert all(state.ok for state in states.values())
    # with keys, the store is listed here; without (an instance role), by boto3 in the child
    from pydantic import SecretStr

    keys = {"s3_access_key_id": SecretStr("key"), "s3_secret_access_key": SecretStr("secret")}
    assert metrics.lean_groups(settings.model_copy(update=keys)) == {"inventory", "storage"}
    keyless = {"s3_access_key_id": SecretStr(""), "s3_secret_access_key": SecretStr("")}
    assert metrics.lean_groups(settings.model_copy(update=keyless)) == {"inventory"}


def test_skipped_doctor_checks_are_left_out_and_unknown_ones_refused(
    settings: PlatformSettings,
) -> None:
    from mlops_platform import health

    assert metrics.groups_for(()) == metrics.GROUPS
    skip = [name for name, _ in health.CHECKS if name != "settings"]
    samples = metrics.groups_for(skip)["checks"](settings)
    assert samples and {s.labels["component"] for s in samples} == {"settings"}


def test_the_resident_exporter_holds_neither_mlflow_nor_sqlalchemy_nor_boto3(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    """What the resident process imports: the lean groups fail here (nothing listens on
    the ports), but they ran, and pulled in none of the heavy libraries."""
    import sys

    from tests.conftest import free_port
    from tests.support.proc import run

    env_file = tmp_path / ".env"
    env_file.write_text(
        f"MLOPS_ENV=dev\nMLOPS_STATE_DIR={tmp_path / 'state'}\n"
        f"MLOPS_DB_PORT={free_port()}\nMLOPS_S3_PORT={free_port()}\n"
        "MLOPS_S3_ACCESS_KEY_ID=key-for-the-test\nMLOPS_S3_SECRET_ACCESS_KEY=secret-for-the-test\n"
        "MLOPS_DB_PASSWORD=db-password-for-the-test\n"
    )
    code = f"""
import sys, json
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from mlops_platform import metrics
from mlops_platform.settings import load_settings
from pathlib import Path
settings = load_settings(Path({str(env_file)!r}), check=False)
collector = metrics.PlatformCollector(settings, groups={{n: metrics.GROUPS[n] for n in
    metrics.lean_groups(settings)}})
for name in collector.groups:
    collector.refresh(name)
registry = CollectorRegistry(auto_describe=False)
registry.register(collector)
generate_latest(registry)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"mlflow", "sqlalchemy", "boto3",
    "botocore", "alembic", "pandas", "numpy", "requests"}})
print(json.dumps({{"heavy": heavy, "errors": {{n: s.error for n, s in collector.state.items()}}}}))
"""
    done = run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["heavy"] == [], result
    assert set(result["errors"]) == {"inventory", "storage"}
    assert all(result["errors"].values()), result  # they did try: nothing listens there


def test_an_unknown_skipped_check_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    from tests.support.proc import clean_env, run_cli

    args = ("metrics", "--once", "--skip-check", "trackin")
    done = run_cli(*args, env=clean_env(), cwd=tmp_path, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "--skip-check trackin is not a doctor check group" in output
    assert "settings, database, s3, tracking, proxy, disk" in output
    assert "Traceback" not in output
