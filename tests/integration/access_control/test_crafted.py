"""Crafted requests without valid credentials are refused and never reach MLflow; valid
credentials behave as MLflow directly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.access_control.support import check_proxy
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


def test_no_crafted_request_gets_through(platform: Platform) -> None:
    port = urlsplit(platform.url).port
    assert port is not None
    report = check_proxy(platform, port)
    assert len(report.outcomes) >= 100
    assert len({o.source for o in report.outcomes}) == len(report.outcomes)
    assert report.problems == [], "\n".join(report.problems)
    by_status: dict[int | None, int] = {}
    for outcome in report.outcomes:
        by_status[outcome.status] = by_status.get(outcome.status, 0) + 1
    print(
        f"\nACCESS REPORT: {len(report.outcomes)} crafted requests, each from its own address, "
        f"each refused with its expected status {dict(sorted(by_status.items()))}; "
        "none reached MLflow, the legitimate control did"
    )


def test_valid_credentials_behave_as_mlflow_directly(platform: Platform) -> None:
    direct = f"http://127.0.0.1:{platform.settings.server_port}"
    # What nginx adds for a logged-in user (ignored by a server without permissions).
    direct_headers = {
        "Host": f"localhost:{platform.settings.server_port}",
        "X-Forwarded-User": platform.user,
        "X-Mlops-Proxy-Secret": platform.settings.proxy_secret.get_secret_value(),
    }
    for path in [
        "/api/2.0/mlflow/experiments/search?max_results=5",
        "/ajax-api/2.0/mlflow/experiments/search?max_results=5",
        "/api/2.0/mlflow/registered-models/search",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        "/api/2.0/mlflow/experiments/get?experiment_id=999999",
        "/version",
    ]:
        via_proxy = requests.get(platform.url + path, auth=platform.auth, timeout=10)
        straight = requests.get(direct + path, headers=direct_headers, timeout=10)
        assert via_proxy.status_code == straight.status_code, path
        assert via_proxy.content == straight.content, path
