"""`init`: a ``.env`` with strong generated secrets and the proxy's first user."""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from mlops_platform.errors import ConfigError
from mlops_platform.render import htpasswd
from mlops_platform.render.envexample import COMPOSE_SECRETS, compose_block
from mlops_platform.render.envfile import env_file_text
from mlops_platform.settings import PlatformSettings

ALPHABET = string.ascii_letters + string.digits
GENERATED = (
    "db_password",
    "s3_access_key_id",
    "s3_secret_access_key",
    "flask_secret_key",
    "proxy_password",
    "proxy_secret",
    "s3_admin_access_key_id",
    "s3_admin_secret_access_key",
    "s3_backup_access_key_id",
    "s3_backup_secret_access_key",
    "kek_passphrase",
)


def token(length: int, alphabet: str = ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def generate_secrets() -> dict[str, str]:
    """Fresh secrets, URL- and shell-safe: letters and digits only."""
    return {
        "db_password": token(32),
        "s3_access_key_id": "MLOPS" + token(15, string.ascii_uppercase + string.digits),
        "s3_secret_access_key": token(40),
        "flask_secret_key": token(48),
        "proxy_password": token(32),
        "proxy_secret": token(48),
        # One object-store identity per purpose: the kit's SeaweedFS scopes each one.
        "s3_admin_access_key_id": "MLOPSADM" + token(12, string.ascii_uppercase + string.digits),
        "s3_admin_secret_access_key": token(40),
        "s3_backup_access_key_id": "MLOPSBAK" + token(12, string.ascii_uppercase + string.digits),
        "s3_backup_secret_access_key": token(40),
        # MLflow's KEK: without it stored secrets are encrypted with a public default.
        "kek_passphrase": token(48),
    }


@dataclass
class InitResult:
    env_file: Path
    written: bool
    values: dict[str, str] = field(default_factory=dict)  # redacted
    users_file: Path | None = None
    added: list[str] = field(default_factory=list)  # secrets added to an existing file


def write_private(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write ``text`` readable by the owner only, replacing ``path`` atomically.

    The file is born with ``mode`` (never chmodded after), under a fresh random name
    opened with O_EXCL | O_NOFOLLOW: a symlink or file planted at a guessable temp
    name makes it fail instead of writing through it. The rename replaces a symlink
    at ``path`` itself rather than following it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def init_env_file(
    env_file: Path, *, force: bool = False, values: dict[str, str] | None = None
) -> InitResult:
    """Write ``env_file`` with generated secrets; an existing file is kept unless ``force``."""
    if env_file.exists() and not env_file.is_file():
        raise ConfigError(f"{env_file} exists and is not a file", fix="choose another --env-file")
    if env_file.exists() and not force:
        return InitResult(env_file, written=False, added=_add_missing_secrets(env_file))
    chosen = {"env": "prod", "proxy_user": "admin", **generate_secrets(), **(values or {})}
    text = env_file_text(
        chosen,
        header=(
            "mlops-platform settings, written by `mlops-platform init`.\n"
            "Holds secrets: keep it out of version control (mode 600)."
        ),
    )
    # The same file drives `docker compose`: its own variables and secrets (Grafana's
    # admin, the serving and monitoring accounts) too, and who owns the state folder.
    compose = {name: token(32) for name in COMPOSE_SECRETS}
    compose["STATE_OWNER"] = f"{os.getuid()}:{os.getgid()}"
    text += compose_block(compose)
    write_private(env_file, text)
    shown = {k: ("********" if k in GENERATED else v) for k, v in chosen.items()}
    return InitResult(env_file, written=True, values=shown)


def _add_missing_secrets(env_file: Path) -> list[str]:
    """Append the generated secrets an existing file lacks (one a newer version introduced).

    A variable set in the file is left alone; one only commented out counts as missing.
    """
    text = env_file.read_text(encoding="utf-8")
    present = set()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            present.add(key.upper())
    fresh = generate_secrets()
    missing = [name for name in GENERATED if f"MLOPS_{name.upper()}" not in present]
    # docker compose's own secrets too (it refuses to start without them).
    compose = [name for name in COMPOSE_SECRETS if name not in present]
    if not missing and not compose:
        return []
    lines = [
        "",
        "# Added by `mlops-platform init`: secrets this version needs that the file lacked.",
    ]
    lines += [f"MLOPS_{name.upper()}={fresh[name]}" for name in missing]
    lines += [f"{name}={token(32)}" for name in compose]
    write_private(env_file, text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return [f"MLOPS_{name.upper()}" for name in missing] + compose


def ensure_users_file(settings: PlatformSettings) -> Path:
    """The proxy's password file holds ``proxy_user`` with the current password.

    Other users in the file are kept; an entry that no longer matches is replaced.
    """
    path = settings.users_file
    password = settings.proxy_password.get_secret_value()
    if not password:
        raise ConfigError(
            "MLOPS_PROXY_PASSWORD is empty", fix="run `mlops-platform init` or set it"
        )
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    current = htpasswd.parse(text).get(settings.proxy_user)
    if current is None or not htpasswd.verify(current, password):
        write_private(path, htpasswd.with_user(text, settings.proxy_user, password))
    return path
