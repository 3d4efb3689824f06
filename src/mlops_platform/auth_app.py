"""The tracking server's app: MLflow's permission engine, fed by the proxy's identity.

``mlflow server --app-name mlops-auth`` runs :func:`create_app`: MLflow's own
``basic-auth`` app (its user store, roles and READ/USE/EDIT/MANAGE checks on every
route, FastAPI's included) with two things of the kit's:

- :func:`authenticate`, MLflow's documented ``authorization_function`` hook. nginx has
  checked the password; it forwards the user name in ``X-Forwarded-User`` together with
  the proxy secret in ``X-Mlops-Proxy-Secret``. The user name is believed only when the
  secret matches (constant-time compare); anything else is 401. A user seen for the
  first time is created in MLflow's store with ``MLOPS_AUTH_DEFAULT_ROLE``; two workers
  racing on that first request both succeed.
- :func:`kit_rules`, run before MLflow's checks, for what MLflow cannot express:
  only approvers and admins set or delete the protected aliases
  (``MLOPS_AUTH_PROTECTED_ALIASES``) and write the approval tags (``mlops.*`` on
  registered models and versions); viewers create nothing (with workspaces off MLflow
  lets any user create experiments and models).

MLflow's scrypt password check never runs per request: it is ~120 ms, several times a
request, and nginx's check is the front door.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.datastructures import Authorization

from mlops_platform.auth_checks import (
    PermissionTrackingStore,
    cache_run_experiments,
    lighter_history_redaction,
    lighter_log_batch_check,
    model_ids_of_batch,
)
from mlops_platform.auth_memo import AuthMemo, recheck_refusals
from mlops_platform.render.auth import SECRET_HEADER, USER_HEADER
from mlops_platform.settings import PlatformSettings, server_app_settings

__all__ = [
    "SECRET_HEADER",
    "USER_HEADER",
    "AuthMemo",
    "PermissionTrackingStore",
    "authenticate",
    "cache_run_experiments",
    "create_app",
    "kit_rules",
    "lighter_log_batch_check",
    "model_ids_of_batch",
    "recheck_refusals",
]
PROTECTED_TAG_PREFIX = "mlops."
# How long a worker remembers that a user exists in the store.
KNOWN_USER_SECONDS = 60.0
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# /api/2.0/mlflow/<route>, /ajax-api/2.0/mlflow/<route>, with or without /preview.
_ROUTE = re.compile(r"^/(?:ajax-)?api/\d\.\d/(?:preview/)?mlflow/(.+?)/?$")

_logger = logging.getLogger("mlops_platform.auth")
_settings: PlatformSettings | None = None
_known_users: dict[str, float] = {}


def settings() -> PlatformSettings:
    global _settings
    if _settings is None:
        _settings = server_app_settings()
    return _settings


def _json_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error_code": code, "message": message})
    response.status_code = status
    return response


def _unauthorized() -> Response:
    # No WWW-Authenticate: the browser's login belongs to nginx, not to this server.
    return _json_error(
        401,
        "UNAUTHENTICATED",
        "requests must come through the platform's proxy (no valid proxy identity)",
    )


def _forbidden(message: str) -> Response:
    return _json_error(403, "PERMISSION_DENIED", message)


def _store() -> Any:
    from mlflow.server.auth import store

    return store


def _ensure_known(name: str) -> None:
    now = time.monotonic()
    if _known_users.get(name, 0.0) > now:
        return
    from mlops_platform import auth_store

    auth_store.ensure_user(_store(), name, settings().auth_default_role)
    _known_users[name] = now + KNOWN_USER_SECONDS


def authenticate() -> Authorization | Response:
    """MLflow's ``authorization_function``: the proxy's user, or 401."""
    expected = settings().proxy_secret.get_secret_value().encode()
    sent = request.headers.get(SECRET_HEADER, "").encode()
    if not expected or not hmac.compare_digest(sent, expected):
        return _unauthorized()
    name = request.headers.get(USER_HEADER, "")
    if not _NAME.match(name):
        return _unauthorized()
    _ensure_known(name)
    return Authorization("basic", {"username": name, "password": ""})


# -- the kit's rules, in front of MLflow's ----------------------------------------


def _params() -> dict[str, Any]:
    body = request.get_json(silent=True, cache=True) if request.data else None
    params: dict[str, Any] = dict(request.args.items())
    if isinstance(body, dict):
        params.update(body)
    return params


def _protected_tags(params: dict[str, Any]) -> list[str]:
    keys = []
    if "key" in params:
        keys.append(str(params["key"]))
    tags = params.get("tags")
    if isinstance(tags, list):
        keys += [str(t.get("key", "")) for t in tags if isinstance(t, dict)]
    return [k for k in keys if k.startswith(PROTECTED_TAG_PREFIX)]


def required_role(route: str, method: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """The least role a request needs beyond MLflow's own checks, with the reason; or None."""
    if method == "POST" and route in ("experiments/create", "registered-models/create"):
        what = "experiments" if route.startswith("experiments") else "registered models"
        tags = _protected_tags(params)
        if tags:
            return "approver", f"only approvers may write the approval tag {tags[0]}"
        return "editor", f"viewers may not create {what}"
    if route == "registered-models/alias" and method in ("POST", "DELETE"):
        alias = str(params.get("alias", ""))
        if alias in settings().protected_alias_list():
            return "approver", f"only approvers may move the protected alias @{alias}"
        return None
    if route in (
        "model-versions/set-tag",
        "model-versions/delete-tag",
        "registered-models/set-tag",
        "registered-models/delete-tag",
        "model-versions/create",
    ):
        tags = _protected_tags(params)
        if tags:
            return "approver", f"only approvers may write the approval tag {tags[0]}"
        return None
    if route == "model-versions/transition-stage":
        return "approver", "only approvers may change a version's stage"
    return None


def kit_rules() -> Response | None:
    """Flask before-request hook: refuse what the caller's role does not allow (403)."""
    match = _ROUTE.match(request.path)
    if match is None or request.method not in ("POST", "DELETE", "PATCH"):
        return None
    route = match.group(1)
    need = required_role(route, request.method, _params())
    alias_delete = route == "registered-models/alias" and request.method == "DELETE"
    if need is None and not alias_delete:
        return None
    authorization = authenticate()
    if isinstance(authorization, Response):
        return authorization
    from mlops_platform import auth_store

    user = str(authorization.username)
    held = auth_store.role_of(_store(), user)
    if need is not None:
        role, reason = need
        allowed = held is not None and auth_store.ROLE_RANK[held] >= auth_store.ROLE_RANK[role]
        if role == "approver":  # the governed moves: one audit line each, whoever asked
            _audit(user, held, allowed, route)
        if not allowed:
            return _forbidden(f"{reason} (user {user} is {held or 'without a role'})")
    if alias_delete and held == "approver":
        # MLflow asks MANAGE (delete) of the model to remove an alias, which an approver
        # does not hold on others' models: here the kit's rule is the decision, and
        # MLflow's own handler does the work. Everyone else: MLflow's rule decides.
        from mlflow.server.handlers import _delete_registered_model_alias

        return _delete_registered_model_alias()  # type: ignore[no-any-return]
    return None


def _audit(user: str, role: str | None, allowed: bool, route: str) -> None:
    """One JSON line in the server's log: who asked for which governed change, and the answer.

    The user is the proxy's, not what the client wrote into a tag: this is the record of
    who moved an alias or approved a version (docs/access.md).
    """
    params = _params()
    event = {
        "event": "mlops.audit",
        "user": user,
        "role": role,
        "decision": "allowed" if allowed else "refused",
        "method": request.method,
        "route": route,
    }
    for key in ("name", "version", "alias", "key", "value", "stage"):
        if key in params and isinstance(params[key], (str, int)):
            event[key] = str(params[key])[:200]
    _logger.warning(json.dumps(event, sort_keys=True))


def create_app(app: Flask | None = None) -> Any:
    """MLflow's basic-auth app with the kit's rules registered first."""
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as mlflow_create_app

    flask_app = app or mlflow_app
    flask_app.before_request(kit_rules)  # before MLflow's own hook, which create_app adds
    created = mlflow_create_app(flask_app)
    seconds = settings().auth_cache_seconds
    if seconds > 0:
        recheck_refusals(flask_app, AuthMemo(_store(), seconds))
    import mlflow.server.auth as mlflow_auth

    cache_run_experiments(mlflow_auth)
    lighter_log_batch_check(mlflow_auth)
    lighter_history_redaction(mlflow_auth)
    if created is not flask_app:  # under uvicorn: MLflow's FastAPI app
        from mlops_platform import asgi_gates

        gated = asgi_gates.install(created)
        if "fastapi_permission_middleware" not in gated:
            _logger.warning("MLflow's FastAPI permission middleware not found: left as it is")
    return created
