"""The tracking server's router remembers which of MLflow's FastAPI routers a path is not for.

MLflow's app is a FastAPI app whose router holds several included routers (gateway,
traces, jobs, ...) and, last, a mount of the Flask app that answers the REST API most
clients call (``/api/2.0/mlflow/...``). For every such call the router asks each included
router in turn whether the path is its own, and each walks its routes' regular
expressions: a tenth of the server's CPU on a short API call (py-spy, a ten-point metric
history). Whether a router matches depends on the request's type, method and path alone,
so a "no" is remembered per (type, method, root path, path) and given again without the
walk. A "yes" is never remembered: that router runs as before, and so does everything
around the router (MLflow's security and permission middleware sit outside it).

The memo is bounded (``LIMIT`` entries, emptied when full), so paths made up by clients
cannot grow it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import Host, Match, Mount

LIMIT = 4096
Key = tuple[str, str, str, str]


def _memoized(matches: Callable[[Any], tuple[Match, Any]]) -> Callable[[Any], tuple[Match, Any]]:
    no: set[Key] = set()

    def remembered(scope: Any) -> tuple[Match, Any]:
        key = (scope["type"], scope.get("method", ""), scope.get("root_path", ""), scope["path"])
        if key in no:
            return Match.NONE, {}
        match, child = matches(scope)
        if match is Match.NONE:
            if len(no) >= LIMIT:
                no.clear()
            no.add(key)
        return match, child

    remembered.__wrapped__ = matches  # type: ignore[attr-defined]
    return remembered


def install(app: Any) -> int:
    """Memoize the "no" of each of the app router's routes but its mounts; returns how many.

    Mounts are left alone: the catch-all mount of the Flask app is the answer for most
    paths and its own check is a cheap prefix test. Host routes (their match reads the
    Host header) are left alone too. Called once the app is complete: a route added to
    one of its routers later would not be seen for a path already remembered.
    """
    wrapped = 0
    for route in app.router.routes:
        if isinstance(route, (Mount, Host)):
            continue
        if getattr(route.matches, "__wrapped__", None) is not None:
            continue
        route.matches = _memoized(route.matches)
        wrapped += 1
    return wrapped
