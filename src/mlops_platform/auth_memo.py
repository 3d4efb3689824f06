"""What one worker of the tracking server remembers of MLflow's auth store, and the
re-check that keeps MLflow's permission decisions exact while it does (see
:class:`AuthMemo`). Used by :func:`mlops_platform.auth_app.create_app`."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, has_request_context

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
