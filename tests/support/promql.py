"""The series names the platform's dashboards and alert rules use, and the names its
exporters produce (tests/unit/test_dashboard.py, tests/integration/test_monitoring.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlops_platform import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"))
RULES = sorted(p for p in (ROOT / "monitoring" / "rules").glob("*.yml") if p.name != "tests.yml")
CAPTURED = ROOT / "tests" / "data" / "exporter_series.json"
# The scrape jobs of the local stack's Prometheus, one per exporter.
JOBS = {"prometheus", "mlops-platform", "postgres", "nginx", "seaweedfs", "mlflow-tracking"}

# Series that appear only after an event, so no capture of a healthy stack holds them.
ON_EVENT = {"ALERTS", "mlflow_http_request_exceptions_total"}


def captured() -> dict[str, set[str]]:
    """job -> the series names it exposed on a live local monitoring stack."""
    data = json.loads(CAPTURED.read_text())
    return {job: set(names) for job, names in data.items() if not job.startswith("_")}


PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "time",
    "or",
    "and",
    "unless",
    "bool",
    "offset",
    "topk",
    "abs",
    "clamp_min",
    "absent",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = GROUPING.sub("", text)
    text = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][-+]?\d+)?", "", text)  # numbers, 1e-9
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\b", "", text)
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {t for t in tokens if t not in PROMQL_WORDS}


def known() -> set[str]:
    return metrics.series_names() | set().union(*captured().values()) | ON_EVENT


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            out += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    return out


def rule_exprs() -> list[tuple[str, str]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [(f"{path.name}: {r['alert']}", r["expr"]) for r in group["rules"]]
    return out
