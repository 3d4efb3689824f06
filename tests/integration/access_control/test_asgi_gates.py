"""The kit's gates in front of MLflow's ``@app.middleware("http")`` functions pass on
exactly the requests MLflow's functions only pass on.

Each of MLflow's functions (from MLflow's own FastAPI app with MLflow's permission
middleware, MLflow's routes) is run for every path of both apps and every method, with a
``call_next`` that records the call and the workspace bound at that moment: a request
without credentials, with and without a workspace header, fail-closed on and off. MLflow
"only passes on" when it calls ``call_next`` with no workspace bound and returns its
answer untouched (the permission middleware answers 401 first for every request it
decides). The kit's predicate must agree on every request, twice (the second answer of
the permission gate is the remembered one). Then, on the session platform, MLflow's
Flask check still refuses a caller without permission through the proxy.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import requests
from mlflow.server import app as flask_app
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from mlops_platform import asgi_gates
from tests.integration.conftest import Platform
from tests.support.asgi import http_scope
from tests.support.users import add_user

pytestmark = pytest.mark.integration

METHODS = ("GET", "POST", "DELETE", "PATCH", "PUT")
EXTRA_PATHS = (
    "/",
    "/health",
    "/version",
    "/server-info",
    "/api/3.0/mlflow/server-info",
    "/gateway/openai/v1/chat/completions",
    "/gateway/mlflow/v1/chat/completions",
    "/v1/traces",
    "/ajax-api/3.0/jobs",
    "/ajax-api/3.0/jobs/search",
    "/ajax-api/3.0/mlflow/assistant/chat",
    "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.pkl",
    "/api/2.0/mlflow-artifacts/artifacts",
    "/api/3.0/mlflow/mcp-servers",
    "/ajax-api/2.0/mlflow/metrics/get-history",
    "/api/2.0/mlflow/metrics/get-history/",
    "/no/such/route",
    "/static-files/index.html",
    "/graphql",
)


@pytest.fixture(scope="module")
def mlflow_app() -> Any:
    """MLflow's FastAPI app with MLflow's permission middleware (no auth store needed:
    a request without credentials is refused before any store read)."""
    from mlflow.server.auth import add_fastapi_permission_middleware
    from mlflow.server.fastapi_app import create_fastapi_app

    app = create_fastapi_app(flask_app)
    add_fastapi_permission_middleware(app)
    return app


def _paths(app: Any) -> list[str]:
    paths = {rule.rule for rule in flask_app.url_map.iter_rules() if "<" not in rule.rule}
    for route in app.routes:
        path = getattr(route, "path", "")
        if path and "{" not in path:
            paths.add(path)
    return sorted(paths | set(EXTRA_PATHS))


def _scope(path: str, method: str, workspace: str | None = None) -> dict[str, Any]:
    headers = [] if workspace is None else [(b"x-mlflow-workspace", workspace.encode())]
    return http_scope(path, method, headers)


def _mlflow_passes_on(dispatch: Any, scope: dict[str, Any]) -> bool:
    from mlflow.utils import workspace_context

    seen: list[str | None] = []
    sentinel = PlainTextResponse("passed on")
    headers = list(sentinel.headers.items())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call_next(request: Request) -> PlainTextResponse:
        seen.append(workspace_context.get_request_workspace())
        return sentinel

    answer = asyncio.run(dispatch(Request(scope, receive), call_next))
    return seen == [None] and answer is sentinel and list(answer.headers.items()) == headers


def _functions(app: Any) -> dict[str, Any]:
    return {
        m.kwargs["dispatch"].__name__: m.kwargs["dispatch"]
        for m in app.user_middleware
        if m.cls is BaseHTTPMiddleware
    }


@pytest.mark.parametrize("fail_closed", ["true", "false"])
@pytest.mark.parametrize(
    "name",
    ["fastapi_permission_middleware", "workspace_context_middleware", "gateway_timing_middleware"],
)
def test_each_gate_passes_on_what_mlflow_passes_on(
    mlflow_app: Any, name: str, fail_closed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_BASIC_AUTH_FAIL_CLOSED", fail_closed)
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES", raising=False)
    dispatch = _functions(mlflow_app)[name]
    passes_on = asgi_gates._predicate(dispatch)
    assert passes_on is not None
    acted, passed = 0, 0
    for path in _paths(mlflow_app):
        for method in METHODS:
            for workspace in (None, "team-a", ""):
                scope = _scope(path, method, workspace)
                expected = _mlflow_passes_on(dispatch, scope)
                for _ in range(2):
                    assert passes_on(scope) == expected, (path, method, workspace)
                acted, passed = acted + (not expected), passed + expected
    assert passed > 500  # the common case really was asked
    if name != "gateway_timing_middleware":
        assert acted > 20  # and so were the requests MLflow acts on


def test_the_gates_take_mlflows_places() -> None:
    from mlflow.server.auth import add_fastapi_permission_middleware
    from mlflow.server.fastapi_app import create_fastapi_app

    app = create_fastapi_app(flask_app)
    add_fastapi_permission_middleware(app)
    names = set(_functions(app))
    assert sorted(asgi_gates.install(app)) == sorted(names)
    assert _functions(app) == {}
    assert [m.cls for m in app.user_middleware].count(asgi_gates.PassOnGate) == len(names)
    assert asgi_gates.install(app) == []  # nothing left to replace


def test_decided_routes_still_refuse_through_the_platform(platform: Platform) -> None:
    """Through the proxy, with the gate in place: a user without grants is refused the
    history of an existing run and of a missing one; the owner reads it."""
    auth = add_user(platform, "viewer-gate")
    experiment = requests.post(
        platform.url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"gate-{uuid.uuid4().hex[:8]}"},
        auth=platform.auth,
        timeout=30,
    ).json()["experiment_id"]
    run_id = requests.post(
        platform.url + "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment},
        auth=platform.auth,
        timeout=30,
    ).json()["run"]["info"]["run_id"]
    history = platform.url + "/api/2.0/mlflow/metrics/get-history"
    params = {"run_id": run_id, "metric_key": "loss"}
    assert requests.get(history, params=params, auth=auth, timeout=30).status_code == 403
    assert requests.get(history, params=params, auth=platform.auth, timeout=30).status_code == 200
    missing = {"run_id": uuid.uuid4().hex, "metric_key": "loss"}
    assert requests.get(history, params=missing, auth=auth, timeout=30).status_code == 403


def test_with_workspaces_on_mlflows_middleware_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    for path in ("/api/2.0/mlflow/metrics/get-history", "/api/3.0/mlflow/server-info"):
        assert not asgi_gates.workspace_passes_on(_scope(path, "GET"))
