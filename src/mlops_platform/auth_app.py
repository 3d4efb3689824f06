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

from flask import Flask, Response, g, has_request_context, jsonify, request
from werkzeug.datastructures import Authorization

from mlops_platform.render.auth import SECRET_HEADER, USER_HEADER
from mlops_platform.settings import PlatformSettings, server_app_settings

__all__ = [
    "SECRET_HEADER",
    "USER_HEADER",
    "AuthMemo",
    "authenticate",
    "create_app",
    "kit_rules",
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


# Auth-store methods that change users, roles or grants: a call clears this worker's memo.
_STORE_WRITES = (
    "add_",
    "assign_",
    "create_",
    "delete_",
    "grant_",
    "remove_",
    "rename_",
    "revoke_",
    "set_",
    "unassign_",
    "update_",
)


class AuthMemo:
    """What one worker remembers of the auth store for ``seconds``: users and their grants.

    MLflow reads the user (is it an admin? its id) and the user's role grants from the
    auth database on every request; for a ``log_metric`` that is more database work than
    the write itself. This memo answers ``store.get_user`` and ``store.list_grants`` from
    memory for ``seconds``, under three rules that keep MLflow's decisions exact:

    - every change made through this worker's store (a new experiment's MANAGE grant, a
      role change) clears the memo at once;
    - a request that MLflow refuses while remembered grants were used is checked again
      against the database (:func:`recheck_refusals`), so a grant made through another
      worker or the CLI applies on the next request;
    - a revoked grant or a removed user therefore stops working everywhere within
      ``seconds`` (``MLOPS_AUTH_CACHE_SECONDS``; 0 turns the memo off).
    """

    def __init__(self, store: Any, seconds: float, *, max_entries: int = 10000) -> None:
        self.seconds, self._max = seconds, max_entries
        self._users: dict[str, tuple[float, Any]] = {}
        self._grants: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._get_user, self._list_grants = store.get_user, store.list_grants
        store.get_user, store.list_grants = self.get_user, self.list_grants
        for name in dir(type(store)):
            if name.startswith(_STORE_WRITES):
                setattr(store, name, self._clearing(getattr(store, name)))

    def clear(self) -> None:
        self._users.clear()
        self._grants.clear()

    def _clearing(self, write: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return write(*args, **kwargs)
            finally:
                self.clear()

        return call

    def _remembered(self, table: dict[Any, tuple[float, Any]], key: Any, load: Any) -> Any:
        now = time.monotonic()
        hit = table.get(key)
        if hit is not None and hit[0] > now and _memo_allowed():
            _note_memo_used()
            return hit[1]
        value = load()
        if len(table) >= self._max:
            table.clear()
        table[key] = (now + self.seconds, value)
        return value

    def get_user(self, username: str) -> Any:
        return self._remembered(self._users, username, lambda: self._get_user(username))

    def list_grants(self, user_id: int, workspace: str, resource_types: Any) -> Any:
        key = (user_id, workspace, frozenset(resource_types))
        return self._remembered(
            self._grants, key, lambda: self._list_grants(user_id, workspace, resource_types)
        )


def _memo_allowed() -> bool:
    """Remembered answers serve only requests whose refusal is re-decided.

    Those are the requests that went through MLflow's Flask permission hook as wrapped by
    :func:`recheck_refusals` (before the second pass, which reads fresh). MLflow's FastAPI
    permission middleware (artifact downloads, the gateway, traces over OTLP) has no second
    pass, so its checks always read the database.
    """
    return (
        has_request_context()
        and bool(g.get("mlops_recheck_armed"))
        and not g.get("mlops_fresh_auth_reads")
    )


def _note_memo_used() -> None:
    if has_request_context():
        g.mlops_auth_memo_used = True


def recheck_refusals(app: Flask, memo: AuthMemo) -> None:
    """Wrap MLflow's Flask permission hook: a refusal made on remembered data is re-decided.

    The second decision reads users and grants from the database, so a grant made a moment
    ago through another worker (or ``users grant``) is honoured; only a refusal costs this
    extra check, an allowed request never does.
    """
    hooks = app.before_request_funcs.setdefault(None, [])
    for index, hook in enumerate(hooks):
        if getattr(hook, "__module__", "") == "mlflow.server.auth" and (
            hook.__name__ == "_before_request"
        ):
            hooks[index] = _rechecking(hook, memo)
            return
    raise RuntimeError("MLflow's permission hook (_before_request) was not found")


def _rechecking(hook: Any, memo: AuthMemo) -> Any:
    def before_request() -> Any:
        g.mlops_auth_memo_used = False
        g.mlops_recheck_armed = True
        answer = hook()
        if (
            isinstance(answer, Response)
            and answer.status_code in (401, 403)
            and g.get("mlops_auth_memo_used")
        ):
            g.mlops_fresh_auth_reads = True
            answer = hook()
        return answer

    before_request.__name__ = "mlops_permission_check"
    return before_request


class _ExperimentOfRun:
    """What MLflow's permission checks read of a run: ``info.experiment_id``.

    Anything else is fetched in full on first use, so a check that needs more still gets it.
    """

    def __init__(self, experiment_id: str, fetch: Any) -> None:
        self._fetch, self._run = fetch, None
        self.info = _ExperimentOfRunInfo(experiment_id, self)

    def full(self) -> Any:
        if self._run is None:
            self._run = self._fetch()
        return self._run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.full(), name)


class _ExperimentOfRunInfo:
    def __init__(self, experiment_id: str, run: _ExperimentOfRun) -> None:
        self.experiment_id, self._run = experiment_id, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run.full().info, name)


class _PermissionTrackingStore:
    """The tracking store as MLflow's permission checks see it: runs' experiments cached.

    Every check on a run (log_metric, log_batch, set_tag, ...) fetches the whole run to
    learn its experiment: as much database work as the write itself. A run never moves
    to another experiment, so each worker remembers the answer; everything else goes to
    the real store unchanged.
    """

    def __init__(self, real: Any, max_runs: int = 100_000) -> None:
        self._real, self._max = real, max_runs
        self._experiments: dict[str, str] = {}

    def get_run(self, run_id: str) -> Any:
        experiment_id = self._experiments.get(run_id)
        if experiment_id is not None:
            return _ExperimentOfRun(experiment_id, lambda: self._real.get_run(run_id))
        run = self._real.get_run(run_id)  # a missing run raises, as before: not remembered
        if len(self._experiments) >= self._max:
            self._experiments.clear()
        self._experiments[run_id] = run.info.experiment_id
        return run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def cache_run_experiments(auth_module: Any) -> None:
    """Give MLflow's permission checks :class:`_PermissionTrackingStore`."""
    from mlflow.server import handlers

    wrapped: dict[int, _PermissionTrackingStore] = {}

    def tracking_store() -> Any:
        real = handlers._get_tracking_store()
        store = wrapped.get(id(real))
        if store is None or store._real is not real:
            store = wrapped[id(real)] = _PermissionTrackingStore(real)
        return store

    auth_module._get_tracking_store = tracking_store


def _model_ids_of_batch() -> set[str] | None:
    """The per-metric model ids of a log-batch JSON body, both spellings; None when the
    body is not the plain JSON shape (MLflow's own check then decides)."""
    body = request.get_json(silent=True, cache=True)
    if not isinstance(body, dict):
        return None
    metrics = body.get("metrics") or []
    if not isinstance(metrics, list):
        return None
    ids: set[str] = set()
    for metric in metrics:
        if not isinstance(metric, dict):
            return None
        for key in ("model_id", "modelId"):
            value = metric.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                return None
            ids.add(value)
    return ids


def lighter_log_batch_check(auth_module: Any) -> None:
    """MLflow's check of ``runs/log-batch`` converts the whole body into its protobuf
    message only to collect per-metric model ids, and the handler converts it again: for
    100 metrics that is a third of the check's CPU. The kit reads the same ids from the
    JSON Flask has already parsed and hands them to MLflow's own
    ``_validate_can_update_run_and_models``; any other body shape goes to MLflow's check."""
    original = auth_module.validate_can_log_batch
    decide = auth_module._validate_can_update_run_and_models

    def validate_can_log_batch() -> bool:
        ids = _model_ids_of_batch()
        return original() if ids is None else bool(decide(ids))

    table = auth_module.BEFORE_REQUEST_VALIDATORS
    for key, validator in list(table.items()):
        if validator is original:
            table[key] = validate_can_log_batch


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
    return created
