"""The doctor's tracking server checks: it answers, runs the kit's MLflow, refuses a
forged user header, and its user store is at MLflow's head."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

from mlops_platform.checks import CheckResult
from mlops_platform.errors import PlatformError
from mlops_platform.hosts import url_host
from mlops_platform.render.auth import identity_headers
from mlops_platform.settings import PlatformSettings


def server_base(settings: PlatformSettings) -> str:
    return f"http://{url_host(settings.server_host)}:{settings.server_port}"


def check_server(settings: PlatformSettings, *, timeout: float = 3.0) -> list[CheckResult]:
    # The installed MLflow's version from its metadata: importing MLflow for it would cost
    # the exporter's doctor child (``mlops-platform metrics``) ~150 MB and seconds.
    from importlib.metadata import version as installed_version

    kit_mlflow = installed_version("mlflow")
    start = time.monotonic()
    try:
        response = requests.get(
            server_base(settings) + "/version",
            headers=identity_headers(settings),
            timeout=timeout,
        )
    except requests.RequestException as exc:
        return [
            CheckResult(
                "tracking",
                "answers",
                "fail",
                f"the tracking server at {server_base(settings)} does not answer "
                f"({exc.__class__.__name__})",
                "`mlops-platform up` starts it; `mlops-platform logs tracking` says why it stopped",
            )
        ]
    took = time.monotonic() - start
    version = response.text.strip()
    if response.status_code != 200:
        return [
            CheckResult(
                "tracking",
                "answers",
                "fail",
                f"GET /version answered {response.status_code}",
                "`mlops-platform logs tracking`",
                took,
            )
        ]
    if version != kit_mlflow:
        return [
            CheckResult(
                "tracking",
                "version",
                "fail",
                f"the server runs MLflow {version}, this kit has {kit_mlflow}",
                "restart the server with the kit's MLflow (`mlops-platform down && "
                "mlops-platform up`, or roll out the new image)",
                took,
            )
        ]
    return [
        CheckResult("tracking", "version", "ok", f"MLflow {version} answers", seconds=took),
        *check_identity(settings, timeout=timeout),
    ]


def check_identity(settings: PlatformSettings, *, timeout: float = 3.0) -> list[CheckResult]:
    """Permissions on: the server refuses a request without the proxy secret, and its user
    store is at MLflow's head."""
    if not settings.identity_enabled:
        return [
            CheckResult(
                "tracking",
                "permissions",
                "warn",
                "permissions are off: every proxy user is an MLflow admin",
                "set MLOPS_AUTH_ENABLED=true and restart (docs/access.md)",
            )
        ]
    from mlops_platform import auth_store

    out = []
    url = server_base(settings) + "/api/2.0/mlflow/experiments/get?experiment_id=0"
    public = urlsplit(settings.resolved_public_url).netloc
    forged = {"X-Forwarded-User": settings.proxy_user, "Host": public}
    detail = ""
    try:
        status = requests.get(url, headers=forged, timeout=timeout).status_code
    except requests.RequestException as exc:
        status = 0
        detail = exc.__class__.__name__
    if status == 401:
        out.append(
            CheckResult("tracking", "identity", "ok", "a user header without the proxy secret: 401")
        )
    else:
        out.append(
            CheckResult(
                "tracking",
                "identity",
                "fail",
                f"a user header without the proxy secret got {status or detail}, not 401",
                "restart the server with `mlops-platform up` (it runs --app-name mlops-auth)",
            )
        )
    try:
        current, head = auth_store.revision(settings), auth_store.head_revision()
    except PlatformError as exc:
        return [*out, CheckResult("database", "auth store", "fail", exc.message, exc.fix or "")]
    if current == head:
        out.append(CheckResult("database", "auth store", "ok", f"users and grants at head {head}"))
    else:
        out.append(
            CheckResult(
                "database",
                "auth store",
                "fail",
                f"MLflow's user store is at {current or 'nothing'}, MLflow needs {head}",
                "`mlops-platform db upgrade` (or restart: `serve` migrates it)",
            )
        )
    return out
