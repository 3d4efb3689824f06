"""MLflow's ``@app.middleware("http")`` functions, entered only by the requests they act on.

MLflow's FastAPI app runs three functions as Starlette ``BaseHTTPMiddleware`` on every
request, the whole REST API that Flask serves included:

- ``fastapi_permission_middleware`` (the basic-auth app), for the routes FastAPI serves
  itself (the gateway, OTLP traces, jobs, native artifact routes): a Flask route finds
  no validator there and is passed on (``call_next``); Flask's ``before_request`` hook
  checks it;
- ``workspace_context_middleware``: with workspaces off and no workspace header it binds
  "no workspace" and passes the request on;
- ``gateway_timing_middleware``: outside ``/gateway/`` it passes the request on.

A pass costs Starlette's machinery (a task group, memory streams, a wrapped request and
response) and, for the permission middleware with ``MLFLOW_BASIC_AUTH_FAIL_CLOSED`` on,
a match of the path against every native route: together ~3 ms of a 10-point metric
history on a busy 2-core machine (py-spy).

:class:`PassOnGate` takes each one's place in the middleware list. For each request it
asks MLflow's own functions whether MLflow's middleware would only pass it on
(:func:`permission_passes_on`, :func:`workspace_passes_on`,
:func:`gateway_timing_passes_on`): those go straight to the next application with the
same scope, receive and send; every other request runs MLflow's middleware itself.
``tests/integration/access_control/test_asgi_gates.py`` checks the answers against
MLflow's functions for every route of both apps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]
_MAX_REMEMBERED = 4096


class PassOnGate:
    """Pure ASGI middleware: MLflow's middleware function only where it acts."""

    def __init__(self, app: Any, dispatch: Any, passes_on: Callable[[Scope], bool]) -> None:
        from starlette.middleware.base import BaseHTTPMiddleware

        self.app = app
        self.mlflow_middleware = BaseHTTPMiddleware(app, dispatch=dispatch)
        self.passes_on = passes_on

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and self.passes_on(scope):
            await self.app(scope, receive, send)
        else:  # BaseHTTPMiddleware passes other scope types on by itself
            await self.mlflow_middleware(scope, receive, send)


def _routed_path(scope: Scope) -> str | None:
    """MLflow's ``get_routed_asgi_path`` when it reads the scope; None when it would
    read ``request.url`` instead (then MLflow's middleware decides)."""
    path = scope.get("path")
    return path if isinstance(path, str) and path else None


class permission_passes_on:  # noqa: N801 - used as the predicate it is
    """True when ``fastapi_permission_middleware`` would only call ``call_next``:

    - an unprotected route (``is_unprotected_route``);
    - no FastAPI validator (``_find_fastapi_validator``), unless fail-closed is on and the
      path is a native FastAPI route (``_scope_matches_native_route``) without an ungated
      marker, which MLflow refuses.

    The native-route match reads the type, path, root path and method of the request (and
    the Host header for a Starlette ``Host`` route, which MLflow does not have): without a
    ``Host`` route its answer is remembered per worker (bounded), with one it is asked on
    each request.
    """

    def __init__(self, native_routes: list[Any]) -> None:
        self._native = native_routes
        self._remember = not _matches_on_host(native_routes)
        self._native_match: dict[tuple[str, str, str], bool] = {}

    def _matches_native(self, scope: Scope, path: str) -> bool:
        from mlflow.server.auth import _scope_matches_native_route

        if not self._remember:
            return bool(_scope_matches_native_route(self._native, scope))
        key = (path, str(scope.get("root_path", "")), str(scope.get("method", "")))
        hit = self._native_match.get(key)
        if hit is None:
            hit = bool(_scope_matches_native_route(self._native, scope))
            if len(self._native_match) >= _MAX_REMEMBERED:
                self._native_match.clear()
            self._native_match[key] = hit
        return hit

    def __call__(self, scope: Scope) -> bool:
        import mlflow.server.auth as mlflow_auth

        path = _routed_path(scope)
        if path is None:
            return False
        if mlflow_auth.is_unprotected_route(path):
            return True
        if mlflow_auth._find_fastapi_validator(path, scope["method"]) is not None:
            return False
        if not mlflow_auth.MLFLOW_BASIC_AUTH_FAIL_CLOSED.get():
            return True
        markers: tuple[str, ...] = tuple(mlflow_auth._KNOWN_UNGATED_FASTAPI_ROUTE_MARKERS)
        if any(marker in path for marker in markers):
            return True
        return not self._matches_native(scope, path)


def workspace_passes_on(scope: Scope) -> bool:
    """True when ``workspace_context_middleware`` would bind no workspace and pass on:
    workspaces off (``MLFLOW_ENABLE_WORKSPACES``) and no workspace named in the header.

    MLflow's middleware then sets the request's workspace to None (the context variable's
    default) and marks it resolved for the request; with workspaces off nothing reads that
    mark to a different end (Flask's workspace hook resolves to None itself, the budget
    view returns before reading it)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.utils.workspace_utils import WORKSPACE_HEADER_NAME

    path = _routed_path(scope)
    if path is None or MLFLOW_ENABLE_WORKSPACES.get():
        return False
    if path.rstrip("/").endswith("/mlflow/server-info"):
        return True  # MLflow resolves no workspace there, whatever the header says
    header = WORKSPACE_HEADER_NAME.lower().encode("latin-1")
    for name, value in scope.get("headers", ()):
        if name.lower() == header:  # the first one, as Starlette's headers.get reads it
            return not value.decode("latin-1").strip()
    return True


def gateway_timing_passes_on(prefix: str) -> Callable[[Scope], bool]:
    """True when ``gateway_timing_middleware`` would pass on: a path outside ``prefix``."""

    def passes_on(scope: Scope) -> bool:
        path = _routed_path(scope)
        return path is not None and not path.startswith(prefix)

    return passes_on


def _matches_on_host(routes: list[Any]) -> bool:
    """Whether any route under ``routes`` (included routers, mounts, their routes) is a
    Starlette ``Host``: the one kind of route whose match reads more of the request than
    its type, path, root path and method."""
    from starlette.routing import Host

    seen: set[int] = set()
    stack = list(routes)
    while stack:
        route = stack.pop()
        if id(route) in seen:
            continue
        seen.add(id(route))
        if isinstance(route, Host):
            return True
        for name in ("routes", "original_router", "original_route", "app", "router"):
            child = getattr(route, name, None)
            if isinstance(child, list):
                stack.extend(child)
            elif child is not None and isinstance(getattr(child, "routes", None), list):
                stack.extend(child.routes)
            elif child is not None and name in ("original_router", "original_route"):
                stack.append(child)
    return False


def _closure_value(function: Any, name: str) -> Any:
    """A value MLflow's middleware function closed over (its own snapshot of it)."""
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    cells = getattr(function, "__closure__", None) or ()
    for free, cell in zip(names, cells, strict=False):
        if free == name:
            return cell.cell_contents
    return None


def _predicate(dispatch: Any) -> Callable[[Scope], bool] | None:
    """The pass-on test for one of MLflow's middleware functions; None for any other."""
    module, name = getattr(dispatch, "__module__", ""), getattr(dispatch, "__name__", "")
    if (module, name) == ("mlflow.server.auth", "fastapi_permission_middleware"):
        native = _closure_value(dispatch, "native_routes")
        return permission_passes_on(native) if isinstance(native, list) else None
    if (module, name) == ("mlflow.server.fastapi_app", "workspace_context_middleware"):
        return workspace_passes_on
    if (module, name) == ("mlflow.server.fastapi_app", "gateway_timing_middleware"):
        prefix = _closure_value(dispatch, "gateway_path_prefix")
        return gateway_timing_passes_on(prefix) if isinstance(prefix, str) and prefix else None
    return None


def install(app: Any) -> list[str]:
    """Put a :class:`PassOnGate` in place of each of MLflow's middleware functions it
    knows in ``app`` (a FastAPI app not yet started); the names of those replaced."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    if getattr(app, "middleware_stack", None) is not None:
        return []
    replaced = []
    for index, entry in enumerate(list(getattr(app, "user_middleware", []))):
        dispatch = entry.kwargs.get("dispatch")
        if entry.cls is not BaseHTTPMiddleware or entry.args or set(entry.kwargs) != {"dispatch"}:
            continue
        passes_on = _predicate(dispatch)
        if passes_on is not None:
            app.user_middleware[index] = Middleware(
                PassOnGate, dispatch=dispatch, passes_on=passes_on
            )
            replaced.append(dispatch.__name__)
    return replaced
