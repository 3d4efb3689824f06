"""The proxy's users: add, remove and list entries of the password file.

nginx re-reads ``auth_basic_user_file`` on every request, so a change here takes
effect on the next request with no reload. The file holds ``{SSHA}`` hashes only
(see ``render/htpasswd.py`` for why not bcrypt); it is replaced atomically, keeps
its owner and group (the local stack gives it to nginx's worker group) and is
written with mode 0640. Concurrent commands are serialised by a lock file.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlops_platform.bootstrap import token
from mlops_platform.errors import ConfigError, PlatformError
from mlops_platform.render import htpasswd
from mlops_platform.settings import MIN_PASSWORD_LENGTH, PlatformSettings

FILE_MODE = 0o640
GENERATED_LENGTH = 32
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Fragments that make a password guessable however long it is.
_WEAK_PARTS = (
    "password",
    "passwort",
    "qwerty",
    "azerty",
    "letmein",
    "welcome",
    "changeme",
    "changethis",
    "admin",
    "mlflow",
    "secret",
    "iloveyou",
    "monkey",
    "dragon",
    "abc123",
    "123456",
)
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm")


class UserError(ConfigError):
    """A user cannot be added or removed as asked; nothing was changed."""


@dataclass
class UserInfo:
    name: str
    scheme: str  # "{SSHA}", or what else an operator put in the file
    role: str | None = None  # MLflow's view, when permissions are on
    grants: list[dict[str, str]] = field(default_factory=list)
    in_store: bool = False  # known to MLflow's user store (after `users add` or a request)


@dataclass
class AddResult:
    name: str
    users_file: Path
    generated_password: str | None  # shown once when the command generated it
    role: str | None = None  # None: permissions are off


@dataclass
class RoleResult:
    name: str
    role: str
    before: str | None


@dataclass
class GrantResult:
    name: str
    kind: str
    target: str
    level: str | None  # None: revoked
    changed: bool


@dataclass
class RemoveResult:
    name: str
    users_file: Path
    removed: bool  # False: there was no such user (nothing to do)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise UserError(
            f"user name {name!r} is not allowed",
            fix="use 1-64 letters, digits, dots, dashes or underscores",
        )


def weakness(password: str, name: str = "") -> str | None:
    """Why ``password`` is too weak for the proxy, or None if it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it is shorter than {MIN_PASSWORD_LENGTH} characters"
    if password != password.strip() or any(ord(c) < 32 for c in password):
        return "it starts or ends with blanks or holds control characters"
    lowered = password.lower()
    if len(set(lowered)) < 5:
        return "it uses fewer than 5 different characters"
    if name and name.lower() in lowered and len(name) >= 3:
        return "it contains the user name"
    for part in _WEAK_PARTS:
        if part in lowered:
            return f"it contains the common word or pattern {part!r}"
    for seq in _SEQUENCES:
        for start in range(len(seq) - 5):
            run = seq[start : start + 6]
            if run in lowered or run[::-1] in lowered:
                return f"it contains the run {run!r}"
    if lowered.isdigit():
        return "it is digits only"
    return None


def generate_password() -> str:
    return token(GENERATED_LENGTH)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError as exc:
        raise UserError(
            f"cannot read the users file {path}: {exc.strerror}",
            fix="run the command as the file's owner, or check MLOPS_PROXY_USERS_FILE",
        ) from None


def list_users(settings: PlatformSettings, *, with_roles: bool = False) -> list[UserInfo]:
    """Every user of the password file, in file order (no hash is returned).

    ``with_roles`` adds each user's role and own grants from MLflow's user store.
    """
    users = htpasswd.parse(_read(settings.users_file))
    rows = {}
    if with_roles and settings.identity_enabled:
        from mlops_platform import auth_store

        rows = auth_store.list_rows(_store(settings))
    out = []
    for name, hashed in users.items():
        scheme = hashed.split("}", 1)[0] + "}" if hashed.startswith("{") else "crypt"
        row = rows.get(name)
        out.append(
            UserInfo(
                name=name,
                scheme=scheme,
                role=row.role if row else None,
                grants=row.grants if row else [],
                in_store=row is not None,
            )
        )
    return out


def require_user(settings: PlatformSettings, name: str) -> None:
    """``name`` is a user of the password file, or a UserError says how to add it."""
    check_name(name)
    if name not in htpasswd.parse(_read(settings.users_file)):
        raise UserError(
            f"no user {name!r} in {settings.users_file}",
            fix=f"add it: mlops-platform users add {name} --role editor --generate",
        )


def _store(settings: PlatformSettings):  # type: ignore[no-untyped-def]
    from mlops_platform import auth_store

    try:
        return auth_store.open_store(settings)
    except PlatformError:
        raise
    except Exception as exc:  # MLflow's store: one line, not a traceback
        raise UserError(
            f"MLflow's user store is not usable: {auth_store.describe(exc)}",
            fix="check the database (mlops-platform doctor) and MLOPS_AUTH_DB_NAME",
        ) from None


def _require_permissions(settings: PlatformSettings) -> None:
    if not settings.identity_enabled:
        raise UserError(
            "permissions are off (MLOPS_AUTH_ENABLED=false or no proxy): there are no roles",
            fix="set MLOPS_AUTH_ENABLED=true with the proxy on, then restart the server",
        )


def set_role(settings: PlatformSettings, name: str, role: str) -> RoleResult:
    """Give a user of the password file exactly ``role`` in MLflow's store."""
    from mlops_platform import auth_store

    check_name(name)
    _require_permissions(settings)
    auth_store.check_role(role)
    if name not in htpasswd.parse(_read(settings.users_file)):
        raise UserError(
            f"no user {name!r} in {settings.users_file}",
            fix=f"add it: mlops-platform users add {name} --role {role}",
        )
    if name == settings.proxy_user and role != "admin":
        raise UserError(
            f"user {name!r} is MLOPS_PROXY_USER, the platform's admin",
            fix="set another MLOPS_PROXY_USER first, or give this role to another user",
        )
    before = auth_store.set_role(_store(settings), name, role)
    return RoleResult(name=name, role=role, before=before)


def grant(
    settings: PlatformSettings, name: str, kind: str, target: str, level: str | None
) -> GrantResult:
    """Grant ``level`` on one experiment (by id) or registered model (by name); None revokes."""
    from mlops_platform import auth_store

    check_name(name)
    _require_permissions(settings)
    store = _store(settings)
    try:
        if level is None:
            changed = auth_store.revoke(store, name, kind, target)
        else:
            auth_store.grant(store, name, kind, target, level)
            changed = True
    except auth_store.AuthStoreError:
        raise
    except Exception as exc:
        raise UserError(
            f"MLflow refused the grant: {auth_store.describe(exc)}",
            fix="check the experiment id or model name (`mlflow experiments search`)",
        ) from None
    return GrantResult(name, kind, target, level.upper() if level else None, changed)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def replace_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with mode 0640, keeping its owner and group."""
    st = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                try:
                    os.fchown(out.fileno(), st.st_uid, st.st_gid)
                except PermissionError:
                    pass  # not root: the file becomes ours, still 0640
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(
    settings: PlatformSettings, name: str, password: str | None, role: str | None = None
) -> AddResult:
    """Add ``name``; ``password`` None generates one. An existing name is refused.

    With permissions on, the user is also created in MLflow's store with ``role``
    (default ``MLOPS_AUTH_DEFAULT_ROLE``) before the password file lets it in.
    """
    check_name(name)
    if role is not None:
        _require_permissions(settings)
    if settings.identity_enabled:
        from mlops_platform import auth_store

        role = role or settings.auth_default_role
        auth_store.check_role(role)
    generated = None
    if password is None:
        password = generated = generate_password()
    reason = weakness(password, name)
    if reason:
        raise UserError(
            f"password for {name!r} refused: {reason}",
            fix=f"use at least {MIN_PASSWORD_LENGTH} varied characters, or --generate",
        )
    path = settings.users_file
    with locked(path):
        text = _read(path)
        if name in htpasswd.parse(text):
            raise UserError(
                f"user {name!r} already exists in {path}",
                fix=f"`mlops-platform users remove {name}` first to give it a new password; "
                f"`users role {name} ROLE` changes its role",
            )
        if settings.identity_enabled and role is not None:
            auth_store.set_role(_store(settings), name, role)
        replace_file(path, htpasswd.with_user(text, name, password))
    return AddResult(name=name, users_file=path, generated_password=generated, role=role)


def remove_user(settings: PlatformSettings, name: str) -> RemoveResult:
    """Remove ``name``; a name that is not there is reported, not an error."""
    check_name(name)
    if name == settings.proxy_user:
        raise UserError(
            f"user {name!r} is MLOPS_PROXY_USER, which `up` re-creates and clients use",
            fix="change MLOPS_PROXY_PASSWORD to rotate it, or set another MLOPS_PROXY_USER",
        )
    path = settings.users_file
    removed = False
    with locked(path):
        text = _read(path)
        if name in htpasswd.parse(text):
            kept = [ln for ln in text.splitlines() if ln.strip() and ln.split(":", 1)[0] != name]
            replace_file(path, "\n".join(kept) + "\n" if kept else "")
            removed = True
    if settings.identity_enabled:
        # The login is gone first; then MLflow's user and its grants. Runs stay.
        from mlops_platform import auth_store

        removed = auth_store.delete_user(_store(settings), name) or removed
    return RemoveResult(name=name, users_file=path, removed=removed)
