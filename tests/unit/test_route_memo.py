"""The router's memo of "this path is not mine": same answers as without it, fewer walks.

A FastAPI app shaped like MLflow's (an included router, then a catch-all mount), driven
through ASGI directly, before and after `route_memo.install`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import PlainTextResponse

from mlops_platform import route_memo
from tests.support.asgi import http_scope


async def _fallback(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse(f"mount {scope['method']} {scope['path']}")(scope, receive, send)


def _app() -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)  # as MLflow builds it
    gateway = APIRouter(prefix="/gateway")

    @gateway.get("/routes/{name}")
    def route(name: str) -> PlainTextResponse:
        return PlainTextResponse(f"gateway {name}")

    app.include_router(gateway)
    app.mount("/", _fallback)
    walks = {"n": 0}
    included = app.router.routes[0]
    original = included.matches

    def counted(scope: Any) -> Any:
        walks["n"] += 1
        return original(scope)

    included.matches = counted  # type: ignore[method-assign]
    return app, walks


def _call(app: FastAPI, method: str, path: str) -> tuple[int, str]:
    scope = http_scope(path, method)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode()


REQUESTS = [
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("GET", "/gateway/routes/a"),
    ("POST", "/gateway/routes/a"),  # the path is the gateway's, the method is not
    ("GET", "/api/2.0/mlflow/metrics/get-history"),
    ("GET", "/gateway/routes/b"),
]


def test_every_answer_is_the_same_with_the_memo() -> None:
    plain, _ = _app()
    memo, _ = _app()
    assert route_memo.install(memo) == 1
    for _ in range(3):
        for method, path in REQUESTS:
            assert _call(memo, method, path) == _call(plain, method, path), (method, path)
    assert _call(memo, "GET", "/gateway/routes/a") == (200, "gateway a")
    assert _call(memo, "POST", "/gateway/routes/a") == (200, "mount POST /gateway/routes/a")


def test_a_path_not_the_routers_is_walked_once_and_its_own_every_time() -> None:
    app, walks = _app()
    route_memo.install(app)
    for _ in range(5):
        _call(app, "GET", "/api/2.0/mlflow/metrics/get-history")
    assert walks["n"] == 1
    for _ in range(5):
        _call(app, "GET", "/gateway/routes/a")
    assert walks["n"] == 1 + 5  # its own path: asked every time, never remembered
    _call(app, "POST", "/api/2.0/mlflow/metrics/get-history")  # another method: walked
    assert walks["n"] == 7


def test_the_memo_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(route_memo, "LIMIT", 3)
    app, walks = _app()
    route_memo.install(app)
    for i in range(4):
        _call(app, "GET", f"/made-up/{i}")
    assert walks["n"] == 4
    _call(app, "GET", "/made-up/3")  # kept: the memo was emptied before it went in
    assert walks["n"] == 4
    _call(app, "GET", "/made-up/0")  # gone with the rest
    assert walks["n"] == 5


def test_installing_twice_wraps_once() -> None:
    app, _ = _app()
    assert route_memo.install(app) == 1
    assert route_memo.install(app) == 0
