"""The kit's roles and users in MLflow's user store: the roles (``viewer``, ``editor``,
``approver``; ``admin`` is MLflow's admin flag; ``service`` holds grants only), users
created race-safe, and what ``users`` does (set a role, grant, revoke, list, delete).

The store itself (its database, migration and preparation for the server) is
:mod:`mlops_platform.auth_store`, which re-exports every name here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_platform.errors import PlatformError
from mlops_platform.settings import ROLES, PlatformSettings

if TYPE_CHECKING:  # MLflow's auth package is imported lazily: it is heavy.
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

# MLflow's workspace when workspaces are off: where roles and grants live.
WORKSPACE = "default"
KIT_ROLES = ("viewer", "editor", "approver")
ROLE_RANK = {name: rank for rank, name in enumerate(ROLES)}
# A service account: no kit role, only what it was granted.
SERVICE = "service"
GRANT_KINDS = {"experiment": "experiment", "model": "registered_model"}
LEVELS = ("READ", "USE", "EDIT", "MANAGE")


class AuthStoreError(PlatformError):
    """MLflow's user store refused or could not do what was asked; nothing was changed."""


def role_permissions(settings: PlatformSettings) -> dict[str, list[tuple[str, str, str]]]:
    """Each kit role's grants: (resource type, pattern, permission), all of the workspace."""
    read_all = [("experiment", "*", "READ"), ("registered_model", "*", "READ")]
    everyone = read_all if settings.auth_viewers_read_all else []
    return {
        "viewer": list(everyone),
        "editor": list(everyone),
        # Approvers move aliases and write approval tags on every model: EDIT on all.
        "approver": [("experiment", "*", "READ"), ("registered_model", "*", "EDIT")],
    }


def random_password() -> str:
    return secrets.token_urlsafe(32)


# -- users and their roles ------------------------------------------------------


def _role_id(store: SqlAlchemyStore, role: str) -> int:
    return int(store.get_role_by_name(WORKSPACE, role).id)


def create_user(store: SqlAlchemyStore, name: str, role: str) -> None:
    """Create ``name`` with ``role``; a user created meanwhile by someone else is kept."""
    try:
        store.create_user(name, random_password(), is_admin=role == "admin")
    except Exception:
        if not store.has_user(name):
            raise
        return
    if role not in ("admin", SERVICE):
        _assign(store, name, role)


def _assign(store: SqlAlchemyStore, name: str, role: str) -> None:
    user = store.get_user(name)
    try:
        store.assign_role_to_user(user.id, _role_id(store, role))
    except Exception:
        if role not in user_roles(store, name):
            raise


def user_roles(store: SqlAlchemyStore, name: str) -> list[str]:
    """The kit roles ``name`` holds, ``admin`` included."""
    user = store.get_user(name)
    held = [r.name for r in store.list_user_roles(user.id) if r.name in KIT_ROLES]
    if user.is_admin:
        held.append("admin")
    return held


def role_of(store: SqlAlchemyStore, name: str) -> str | None:
    """The highest kit role of ``name`` (None: a service account, grants only)."""
    held = user_roles(store, name)
    return max(held, key=ROLE_RANK.__getitem__) if held else None


def ensure_user(store: SqlAlchemyStore, name: str, default_role: str) -> bool:
    """``name`` exists in the store (created with ``default_role`` if not); True if created."""
    if store.has_user(name):
        return False
    create_user(store, name, default_role)
    return True


# -- what `users` does -----------------------------------------------------------


@dataclass
class UserRow:
    name: str
    role: str | None
    grants: list[dict[str, str]]


def check_role(role: str) -> None:
    if role not in (*ROLES, SERVICE):
        choices = ", ".join((*ROLES, SERVICE))
        raise AuthStoreError(f"unknown role {role!r}", fix=f"use one of: {choices}")


def set_role(store: SqlAlchemyStore, name: str, role: str) -> str | None:
    """Give ``name`` exactly ``role`` (created if missing); returns the role before."""
    check_role(role)
    if not store.has_user(name):
        create_user(store, name, role)
        return None
    before = role_of(store, name)
    user = store.get_user(name)
    for held in store.list_user_roles(user.id):
        if held.name in KIT_ROLES and held.name != role:
            store.unassign_role_from_user(user.id, held.id)
    if role == "admin":
        if not user.is_admin:
            store.update_user(name, is_admin=True)
    else:
        if user.is_admin:
            store.update_user(name, is_admin=False)
        if role != SERVICE and role not in user_roles(store, name):
            _assign(store, name, role)
    return before


def _grant_target(kind: str, level: str | None = None) -> str:
    if kind not in GRANT_KINDS:
        raise AuthStoreError(
            f"unknown kind {kind!r}", fix="grant on `experiment ID` or `model NAME`"
        )
    if level is not None and level.upper() not in LEVELS:
        raise AuthStoreError(f"unknown level {level!r}", fix="use one of: " + ", ".join(LEVELS))
    return GRANT_KINDS[kind]


def grant(store: SqlAlchemyStore, name: str, kind: str, target: str, level: str) -> None:
    resource_type = _grant_target(kind, level)
    _require_user(store, name)
    store.grant_user_permission(name, resource_type, target, level.upper())


def revoke(store: SqlAlchemyStore, name: str, kind: str, target: str) -> bool:
    """Remove one grant; False if there was none."""
    from mlflow.exceptions import MlflowException

    resource_type = _grant_target(kind)
    _require_user(store, name)
    try:
        store.revoke_user_resource_permission(name, resource_type, target)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _require_user(store: SqlAlchemyStore, name: str) -> None:
    if not store.has_user(name):
        raise AuthStoreError(
            f"no user {name!r} in MLflow's user store",
            fix=f"add it first: mlops-platform users add {name} --role viewer",
        )


def grants_of(store: SqlAlchemyStore, name: str) -> list[dict[str, str]]:
    """The user's own grants (not those of its role)."""
    user = store.get_user(name)
    synthetic = f"__user_{user.id}__"
    out = []
    for role in store.list_user_roles(user.id):
        if role.name != synthetic:
            continue
        for rp in store.list_role_permissions(role.id):
            kind = "model" if rp.resource_type == "registered_model" else rp.resource_type
            out.append({"kind": kind, "target": rp.resource_pattern, "level": rp.permission})
    return out


def list_rows(store: SqlAlchemyStore) -> dict[str, UserRow]:
    rows = {}
    for user, roles in store.list_users_with_roles():
        held = [r.name for r in roles if r.name in KIT_ROLES]
        if user.is_admin:
            held.append("admin")
        role = max(held, key=ROLE_RANK.__getitem__) if held else None
        rows[user.username] = UserRow(user.username, role, grants_of(store, user.username))
    return rows


def delete_user(store: SqlAlchemyStore, name: str) -> bool:
    """Remove the MLflow user and its grants (its runs and models stay); False if absent."""
    if not store.has_user(name):
        return False
    store.delete_user(name)
    return True


def describe(exc: Any) -> str:
    """One line of an MLflow store error."""
    return str(getattr(exc, "message", exc)).splitlines()[0][:300]
