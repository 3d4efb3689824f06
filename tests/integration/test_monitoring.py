"""Monitoring for real (MLOPS_MONITORING=true): Prometheus with the kit's rules scrapes every
exporter of a local stack; stopping the object store fires its alert (through the ALERTS
series), and `up` resolves it.

Its own private stack: it stops the object store, which the session's shared stack must
keep. Prometheus, promtool and the two exporters are Debian packages; a missing one fails
the test with the package to install.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import requests

from mlops_platform.checks import DOCTOR_PROBE_FOLDER
from mlops_platform.render.prometheus import NGINX_STATUS_PATH
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.monitoring import PACKAGES, find_binary
from mlops_platform.stack.seaweedfs import SeaweedFS
from tests.conftest import free_port
from tests.integration.conftest import (
    Platform,
    down_later,
    make_stack_dir,
    require_binaries,
    write_env,
)
from tests.support.promql import JOBS, ON_EVENT, dashboard_exprs, rule_exprs, series_in

pytestmark = pytest.mark.integration

FAST_SCRAPE = 2.0  # seconds, in this test's copy of the configuration
FAST_FOR = 10.0  # seconds: MlopsServiceDown's `for:` in this test's copy of the rules


@pytest.fixture(scope="module")
def monitored() -> Iterator[Platform]:
    require_binaries()
    missing = []
    for name, package in PACKAGES.items():
        try:
            find_binary(name)
        except Exception:  # noqa: BLE001 - collected, then one failure naming them all
            missing.append(f"{name} (apt-get install -y {package})")
    if missing:
        pytest.fail("monitoring tests need: " + "; ".join(missing), pytrace=False)
    root = make_stack_dir("mlops-mon-")
    env_file = write_env(root, monitoring="true", monitoring_port=str(free_port()))
    stack = Platform.configured(root, env_file)
    try:
        up = stack.cli("up", "--json", timeout=600)
        stack.url = json.loads(up.stdout)["url"]
        yield stack
    finally:
        down_later(env_file, remove=root)


def prom(stack: Platform, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{stack.settings.monitoring_port}{path}"
    response = requests.get(url, params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def targets(stack: Platform) -> dict[str, str]:
    active = prom(stack, "/api/v1/targets", state="active")["activeTargets"]
    return {t["labels"]["job"]: t["health"] for t in active}


def firing(stack: Platform, service: str) -> list[dict[str, Any]]:
    query = f'ALERTS{{alertname="MlopsServiceDown", service="{service}", alertstate="firing"}}'
    return list(prom(stack, "/api/v1/query", query=query)["result"])


def wait_for(what: str, check: Any, timeout: float, interval: float = 1.0) -> float:
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        last = check()
        if last is True:
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"{what} within {timeout:.0f}s; last seen: {last}")


def speed_up(stack: Platform) -> None:
    """This test's copy of the configuration: scrape and evaluate every 2 s, and
    MlopsServiceDown after 10 s instead of 1 min; Prometheus re-reads it on SIGHUP."""
    folder = stack.settings.state_dir / "monitoring" / "prometheus"
    config = folder / "prometheus.yml"
    config.write_text(
        config.read_text()
        .replace("scrape_interval: 15s", f"scrape_interval: {FAST_SCRAPE:.0f}s")
        .replace("evaluation_interval: 15s", f"evaluation_interval: {FAST_SCRAPE:.0f}s")
    )
    rules = folder / "rules" / "mlops-platform.yml"
    text = rules.read_text()
    head, tail = text.split("- alert: MlopsServiceDown", 1)
    rules.write_text(
        f"{head}- alert: MlopsServiceDown{tail.replace('for: 1m', f'for: {FAST_FOR:.0f}s', 1)}"
    )
    pid = StateFile.load(stack.settings.state_dir).services["prometheus"]["pid"]
    os.kill(int(pid), signal.SIGHUP)
    wait_for(
        "Prometheus to load the faster rule",
        lambda: any(
            r.get("name") == "MlopsServiceDown" and r.get("duration") == FAST_FOR
            for g in prom(stack, "/api/v1/rules")["groups"]
            for r in g["rules"]
        ),
        timeout=30,
    )


def test_the_lean_collectors_agree_with_sqlalchemy_and_boto3(monitored: Platform) -> None:
    """The exporter counts with psycopg and lists the bucket with signed HTTP in its own
    process: the same values as the kit's SQLAlchemy/MLflow and boto3 code, against the
    real PostgreSQL and SeaweedFS (which checks the signature)."""
    import sqlalchemy

    from mlops_platform import db, metrics, s3

    settings = monitored.settings
    admin = s3.client(settings, purpose="admin")
    prefix = settings.s3_prefix.strip("/")
    keys = [f"{prefix}/lean-test/a b+{i}.bin" for i in range(3)] + ["elsewhere/lean.bin"]
    # The doctor's probe (the exporter's own checks group writes one while it runs) is
    # left out of both figures.
    keys.append(f"{prefix}/{DOCTOR_PROBE_FOLDER}lean-test.bin")
    for i, key in enumerate(keys):
        admin.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"x" * (1000 + i))
    try:
        lean = metrics.collect_storage(settings)
        heavy = metrics.storage_with_boto3(settings, f"{prefix}/")
        assert lean == heavy
        listed = admin.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{prefix}/")
        counted = [
            o for o in listed["Contents"] if DOCTOR_PROBE_FOLDER not in o["Key"]
        ]  # one page: the stack's bucket holds a few dozen objects
        assert not listed["IsTruncated"]
        assert {s.name: s.value for s in lean} == {
            "bucket_size_bytes": sum(o["Size"] for o in counted),
            "bucket_objects": len(counted),
        }
        assert len(counted) >= 3
    finally:
        for key in keys:
            admin.delete_object(Bucket=settings.s3_bucket, Key=key)

    got = {(s.name, tuple(s.labels.items())): s.value for s in metrics.collect_inventory(settings)}
    status = db.schema_status(settings)
    pending = len(db.pending_migrations(status.current)) if status.state == "outdated" else 0
    assert got[("database_migrations_pending", ())] == pending
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            name = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar()
            for kind, sql in metrics.COUNTED.items():
                count = conn.execute(sqlalchemy.text(sql)).scalar()
                assert got[("tracking_objects", (("kind", kind),))] == count, kind
    finally:
        engine.dispose()
    assert got[("database_size_bytes", (("database", name),))] > 0
    # an empty schema counts every migration, as `db status` does
    assert metrics.pending_migrations(None, empty=True) == len(db.pending_migrations(None))


def test_every_target_up_then_object_store_alert_fires_and_resolves(
    monitored: Platform,
) -> None:
    stack = monitored
    status = json.loads(stack.cli("status", "--json").stdout)
    rows = {r["name"]: r for r in (status["services"] if isinstance(status, dict) else status)}
    for name in ("metrics", "postgres-exporter", "nginx-exporter", "prometheus"):
        assert rows[name]["healthy"], rows[name]
    print("rss_mb", {n: rows[n]["rss_mb"] for n in rows})
    secrets = [stack.password, stack.settings.db_password.get_secret_value()]
    for name in ("metrics", "postgres-exporter", "nginx-exporter", "prometheus"):
        proc = psutil.Process(rows[name]["pid"])
        for p in (proc, *proc.children(recursive=True)):
            assert not any(x in " ".join(p.cmdline()) for x in secrets), f"{name}'s argv"

    # nginx's status page answers loopback, with nginx's counters and nothing of MLflow
    page = requests.get(
        f"http://127.0.0.1:{stack.settings.proxy_port}{NGINX_STATUS_PATH}", timeout=5
    )
    assert page.status_code == 200 and page.text.startswith("Active connections:"), page.text

    wait_for(
        "every target up",
        lambda: (lambda t: set(t) == JOBS and set(t.values()) == {"up"} or t)(targets(stack)),
        timeout=90,
    )
    # every series the dashboards and rules name is one this stack's real exporters
    # expose (the capture tests/unit/test_dashboard.py reads says so only statically)
    queries = dashboard_exprs() + rule_exprs()
    expected = set().union(*(series_in(expr) for _, expr in queries)) - ON_EVENT
    assert {"pg_up", "nginx_up", "SeaweedFS_s3_request_total"} <= expected

    def missing() -> object:
        result = prom(stack, "/api/v1/query", query='count by (__name__) ({__name__!=""})')
        names = {r["metric"]["__name__"] for r in result["result"]}
        return expected <= names or sorted(expected - names)

    wait_for("every series the dashboards and rules use", missing, timeout=90, interval=2)
    failed = prom(stack, "/api/v1/query", query="mlops_collect_success == 0")["result"]
    assert failed == [], failed
    for up in ("pg_up == 1", "nginx_up == 1"):
        assert prom(stack, "/api/v1/query", query=up)["result"], up

    speed_up(stack)
    assert firing(stack, "seaweedfs") == []
    state = StateFile.load(stack.settings.state_dir)
    assert SeaweedFS(stack.settings, state).stop(lambda message: None)
    stopped = time.monotonic()
    window = FAST_FOR + 2 * FAST_SCRAPE
    took = wait_for(
        "MlopsServiceDown firing for seaweedfs",
        lambda: bool(firing(stack, "seaweedfs")) or "not firing",
        timeout=window + 30,
        interval=0.5,
    )
    elapsed = time.monotonic() - stopped
    print(f"fired {elapsed:.1f}s after the stop (for {FAST_FOR:.0f}s + 2 scrapes = {window:.0f}s)")
    # one evaluation interval of slack: the rule is evaluated every FAST_SCRAPE seconds
    assert took <= window + FAST_SCRAPE + 6, f"fired after {took:.1f}s, window {window:.0f}s"

    up = json.loads(stack.cli("up", "--json").stdout)
    assert up["started"] == ["seaweedfs"], up
    speed_up(stack)  # `up` rewrote the configuration for SeaweedFS's new metrics port
    wait_for(
        "MlopsServiceDown resolved",
        lambda: firing(stack, "seaweedfs") == [] or "still firing",
        timeout=90,
    )
    wait_for(
        "every target up again",
        lambda: set(targets(stack).values()) == {"up"} or targets(stack),
        timeout=60,
    )
