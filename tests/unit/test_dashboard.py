"""Every query of the Grafana dashboards and every alert rule names series that some
exporter of the platform produces: the kit's (from its code) and the others' as a live
local monitoring stack exposed them (tests/data/exporter_series.json, captured from
Prometheus; tests/integration/test_monitoring.py checks the names in use against a live
stack again), plus Prometheus' own ALERTS and MLflow's exceptions counter, which exist
only once an alert or an exception happened (the latter checked in its exporter's code).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlops_platform import metrics
from tests.support.promql import (
    JOBS,
    captured,
    dashboard_exprs,
    known,
    rule_exprs,
    series_in,
)


def test_the_parser_finds_metric_names() -> None:
    assert series_in(
        'sum by (le) (rate(mlflow_http_request_duration_seconds_bucket{status=~"5.."}[5m]))'
    ) == {"mlflow_http_request_duration_seconds_bucket"}
    assert series_in("time() - mlops_backups > 26 * 3600") == {"mlops_backups"}


def test_the_capture_covers_every_job_and_agrees_with_the_kits_code() -> None:
    jobs = captured()
    assert set(jobs) == JOBS
    kit = {n for n in jobs["mlops-platform"] if n.startswith("mlops_")}
    assert kit == metrics.series_names(), "recapture: the kit's exporter's series changed"


def test_mlflow_names_come_from_its_exporter() -> None:
    spec = importlib.util.find_spec("prometheus_flask_exporter")
    assert spec and spec.origin
    source = Path(spec.origin).read_text()
    for name in ("http_request_total", "http_request_duration_seconds", "http_request_exceptions"):
        assert name in source, name


def test_every_dashboard_query_names_a_produced_series() -> None:
    exprs = dashboard_exprs()
    assert exprs
    for where, expr in exprs:
        names = series_in(expr)
        assert names, f"{where}: no series in {expr}"
        assert names <= known(), f"{where}: {sorted(names - known())} no exporter produces"


def test_every_alert_rule_names_a_produced_series() -> None:
    for where, expr in rule_exprs():
        names = series_in(expr)
        assert names and names <= known(), f"{where}: {sorted(names - known())}"


def test_the_platform_dashboard_shows_the_new_series() -> None:
    text = " ".join(expr for _, expr in dashboard_exprs())
    for name in (
        "mlops_check_status",
        "mlops_tracking_objects",
        "mlops_backup_last_verified_timestamp_seconds",
        "mlops_disk_free_ratio",
        "mlops_proxy_lockouts_total",
        "pg_stat_activity_count",
        "nginx_connections_active",
        "ALERTS",
        "mlops_database_migrations_pending",
        "mlops_bucket_objects",
        "pg_database_size_bytes",
        "pg_stat_database_deadlocks",
        "SeaweedFS_s3_request_total",
        "SeaweedFS_s3_request_seconds_bucket",
    ):
        assert name in text, name
