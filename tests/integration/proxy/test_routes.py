"""Through the running stack: route families, /health, the lockout, a burst, Host checks,
a 1 GB artifact.

Clients that must not share the failed-login counter of other tests bind their own
loopback source address (127.0.0.x), as clients on different hosts would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.conftest import Platform
from tests.integration.proxy.support import loopback_url
from tests.support.http import SEARCH, SourceAdapter, client
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration


# -- through the running stack -------------------------------------------------------

FAMILIES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", SEARCH, {}),
    ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=1", {}),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", {}),
    ("GET", "/static-files/favicon.ico", {}),
    ("POST", "/graphql", {"json": {"query": "{ __typename }"}}),
    ("GET", "/metrics", {}),
]


def test_every_route_family_needs_a_password(platform: Platform) -> None:
    url = loopback_url(platform)
    anonymous = client("127.0.0.21")
    wrong = client("127.0.0.22", (platform.user, "wrong-password-123"))
    unknown = client("127.0.0.22", ("nobody-here", "wrong-password-123"))
    good = client("127.0.0.23", platform.auth)
    statuses = {}
    for method, path, kwargs in FAMILIES:
        for who, session in (("anonymous", anonymous), ("wrong", wrong), ("unknown", unknown)):
            r = session.request(method, url + path, timeout=30, **kwargs)
            assert r.status_code == 401, (who, path, r.status_code)
            assert r.headers["WWW-Authenticate"] == 'Basic realm="MLflow"'
            assert "mlflow" not in r.text.lower()  # nginx's page: nothing from upstream
        r = good.request(method, url + path, timeout=30, **kwargs)
        statuses[path] = r.status_code
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "nginx/" not in r.headers.get("Server", "")
    assert statuses == {path: 200 for _, path, _ in FAMILIES}
    # The session stack runs with MLOPS_PROMETHEUS=true: the metrics Prometheus scrapes
    # (monitoring/prometheus.yml), names the Grafana dashboard uses.
    metrics = good.get(url + "/metrics", timeout=30).text
    assert "mlflow_http_request_total" in metrics or "mlflow_http_request_duration" in metrics


def test_health_needs_no_password_and_says_nothing(platform: Platform) -> None:
    url = loopback_url(platform)
    r = requests.get(url + "/health", timeout=10)
    assert (r.status_code, r.text.strip().lower()) == (200, "ok")
    assert r.headers["Cache-Control"] == "no-store"
    # Nothing but the status, the body "OK" and generic headers: no version, no upstream.
    names = {name.lower() for name in r.headers}
    assert names <= {
        "server",
        "date",
        "content-type",
        "content-length",
        "connection",
        "cache-control",
        "x-content-type-options",
        "x-frame-options",
        "vary",
    }, r.headers
    assert r.headers["Server"] == "nginx"
    assert requests.post(url + "/health", timeout=10).status_code == 403
    assert requests.get(url + "/health/../" + SEARCH, timeout=10).status_code in (400, 401)
    assert requests.get(url + "/healthz", timeout=10).status_code == 401


def test_failed_logins_lock_out_that_address_only(platform: Platform) -> None:
    url = loopback_url(platform) + SEARCH
    guesser = client("127.0.0.31")
    other = client("127.0.0.32", platform.auth)
    codes: list[int] = []
    for i in range(120):
        guess = guesser.get(url, auth=(platform.user, f"guess-{i:04d}-xyz"), timeout=10)
        codes.append(guess.status_code)
        if i % 10 == 0:
            assert other.get(url, timeout=10).status_code == 200, f"other client at guess {i}"
    first_429 = codes.index(429)
    assert set(codes[:first_429]) == {401} and set(codes[first_429:]) == {429}
    assert 20 <= first_429 <= 40, first_429
    locked = guesser.get(url, auth=platform.auth, timeout=10)
    assert locked.status_code == 429, "a locked-out address must not get its passwords checked"
    assert locked.headers["Retry-After"] == "60"
    assert other.get(url, timeout=10).status_code == 200
    print(f"\nLOCKOUT: 401 for the first {first_429} wrong passwords, then 429")


def test_a_busy_legitimate_client_is_not_throttled(platform: Platform) -> None:
    """2,000 log-metric calls from 4 threads of one address: no 429, none lost."""
    url = loopback_url(platform)
    session = client("127.0.0.41", platform.auth)
    session.mount("http://", SourceAdapter("127.0.0.41"))
    exp = session.post(
        url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"proxy-burst-{time.time_ns()}"},
        timeout=30,
    ).json()["experiment_id"]
    run_id = session.post(
        url + "/api/2.0/mlflow/runs/create", json={"experiment_id": exp}, timeout=30
    ).json()["run"]["info"]["run_id"]

    def log(step: int) -> int:
        return session.post(
            url + "/api/2.0/mlflow/runs/log-metric",
            json={
                "run_id": run_id,
                "key": "loss",
                "value": 1 / (step + 1),
                "timestamp": 0,
                "step": step,
            },
            timeout=60,
        ).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(log, range(2000)))
    seconds = time.perf_counter() - started
    assert codes.count(200) == 2000, {c: codes.count(c) for c in set(codes)}
    history = session.get(
        url + "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss", "max_results": 5000},
        timeout=60,
    ).json()["metrics"]
    assert len(history) == 2000
    print(f"\nBURST: 2000 log-metric calls in {seconds:.1f} s ({2000 / seconds:.0f}/s), no 429")


def test_public_host_accepted_unknown_host_refused_by_mlflow(platform: Platform) -> None:
    url = loopback_url(platform) + SEARCH
    session = client("127.0.0.42", platform.auth)
    public = urlsplit(platform.url).netloc
    assert session.get(url, headers={"Host": public}, timeout=10).status_code == 200
    refused = session.get(url, headers={"Host": "evil.example"}, timeout=10)
    # nginx passes any Host on (server_name _); MLflow's --allowed-hosts refuses it.
    assert refused.status_code == 403
    assert "Invalid Host header" in refused.text


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def big_file() -> Iterator[tuple[Path, str]]:
    with scratch_dir("mlops-1g-") as folder:
        path = folder / "model.bin"
        digest = hashlib.sha256()
        block = os.urandom(1 << 20)
        with path.open("wb") as out:
            for i in range(1024):  # 1 GiB, written 1 MiB at a time
                chunk = i.to_bytes(8, "big") + block[8:]
                digest.update(chunk)
                out.write(chunk)
        yield path, digest.hexdigest()


def test_one_gigabyte_artifact_through_the_proxy(
    platform: Platform, mlflow_client_env: dict[str, str], big_file: tuple[Path, str]
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    path, expected = big_file
    assert mlflow_client_env["MLFLOW_TRACKING_URI"] == platform.url  # the proxy
    mlflow.set_experiment("proxy-1g")
    with mlflow.start_run() as run:
        started = time.perf_counter()
        mlflow.log_artifact(str(path), artifact_path="big")
        upload = time.perf_counter() - started
    try:
        with scratch_dir("mlops-1g-dl-") as out:
            started = time.perf_counter()
            local = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="big/model.bin", dst_path=str(out)
            )
            download = time.perf_counter() - started
            assert Path(local).stat().st_size == 1 << 30
            assert _sha256_of(Path(local)) == expected
    finally:
        MlflowClient()._tracking_client._get_artifact_repo(run.info.run_id).delete_artifacts("big")
    print(f"\n1 GiB ARTIFACT via proxy: upload {upload:.1f} s, download {download:.1f} s")
