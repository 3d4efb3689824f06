"""Secret and password rotation for the local stack: a new value in .env and in every place
that holds the old one, in an order that re-running always repairs.

For each secret: the new value goes into .env first (atomically, mode 600), then into the
running service that checks it (PostgreSQL's role password by ALTER ROLE as the cluster's
superuser over its private socket, so the old password is never needed; the proxy's
password file, which nginx re-reads on every request), then the services that read it at
start are restarted (`down` + `up`: the tracking server, SeaweedFS's identities, nginx's
rendered configuration). A run that fails half-way is repaired by running it again.

docker compose: docs/compose.md ("Rotating a password") runs the same steps with
`docker compose` commands.

``rotate_local`` drives the local stack itself (its status, the cluster's superuser
socket, `down` + `up`), so it imports ``mlops_platform.stack`` inside the function: the
stack imports nothing of this module (no cycle), and importing ``rotate`` for the compose
path loads none of the local runner.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_platform import users
from mlops_platform.bootstrap import ensure_users_file, token, write_private
from mlops_platform.errors import ConfigError, StateError
from mlops_platform.pgbin import sql_ident, sql_literal
from mlops_platform.render import htpasswd
from mlops_platform.settings import ENV_PREFIX, PlatformSettings, load_settings

Progress = Callable[[str], None]

# What `rotate` accepts, the settings each one changes, and whether services must restart.
SECRETS: dict[str, tuple[tuple[str, ...], bool]] = {
    "db-password": (("db_password",), True),
    "s3-keys": (("s3_access_key_id", "s3_secret_access_key"), True),
    "proxy-password": (("proxy_password",), False),
    "proxy-secret": (("proxy_secret",), True),
    "flask-secret-key": (("flask_secret_key",), True),
}


@dataclass
class RotateResult:
    env_file: Path
    rotated: list[str] = field(default_factory=list)  # variable names, never values
    applied: list[str] = field(default_factory=list)  # what changed in running services
    restarted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "env_file": str(self.env_file),
            "rotated": self.rotated,
            "applied": self.applied,
            "restarted": self.restarted,
        }


def new_value(name: str) -> str:
    """A fresh value of the kind `init` generates (letters and digits)."""
    if name == "s3_access_key_id":
        return "MLOPS" + token(15, string.ascii_uppercase + string.digits)
    return token(
        {"s3_secret_access_key": 40, "flask_secret_key": 48, "proxy_secret": 48}.get(name, 32)
    )


def _replacement(value: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement that keeps ``VAR=`` and puts ``value`` verbatim after it."""
    return lambda m: m.group(1) + value


def set_env_values(env_file: Path, values: dict[str, str]) -> None:
    """Replace (or append) ``VAR=value`` lines of ``env_file``, atomically, mode 600."""
    text = env_file.read_text(encoding="utf-8")
    for var, value in values.items():
        line = re.compile(rf"^((?:export\s+)?{re.escape(var)}=).*$", re.M)
        if line.search(text):
            text = line.sub(_replacement(value), text)
        else:
            text = text.rstrip("\n") + f"\n{var}={value}\n"
    write_private(env_file, text)


def _write_new_values(
    env_file: Path, name: str, result: RotateResult, progress: Callable[[str], None]
) -> PlatformSettings:
    """New values for secret NAME into the env file; the settings as they now read."""
    values = {f"{ENV_PREFIX}{f.upper()}": new_value(f) for f in SECRETS[name][0]}
    set_env_values(env_file, values)
    result.rotated += list(values)
    progress(f"{name}: new value written to {env_file}")
    return load_settings(env_file, check=False)


def replace_password(settings: PlatformSettings) -> Path:
    """The proxy user's entry in the password file, replaced atomically under the lock the
    `users` commands take; the file keeps its owner and group (nginx's workers read it)."""
    path = settings.users_file
    if not path.is_file():
        return ensure_users_file(settings)
    with users.locked(path):
        users.replace_file(
            path,
            htpasswd.with_user(
                path.read_text(encoding="utf-8"),
                settings.proxy_user,
                settings.proxy_password.get_secret_value(),
            ),
        )
    return path


def check_names(names: list[str]) -> list[str]:
    if not names:
        raise ConfigError(
            "name the secrets to rotate", fix=f"one or more of: {', '.join(SECRETS)}, or all"
        )
    chosen = list(SECRETS) if "all" in names else names
    unknown = [n for n in chosen if n not in SECRETS]
    if unknown:
        raise ConfigError(
            f"cannot rotate {', '.join(unknown)}", fix=f"choose from: {', '.join(SECRETS)}, all"
        )
    return list(dict.fromkeys(chosen))


def rotate_local(
    settings: PlatformSettings, env_file: Path, names: list[str], *, progress: Progress
) -> RotateResult:
    """Rotate ``names`` for the local stack described by ``settings`` and ``env_file``."""
    from mlops_platform.stack import LocalStack
    from mlops_platform.stack.base import StateFile
    from mlops_platform.stack.postgres import Postgres

    chosen = check_names(names)
    if not env_file.is_file():
        raise ConfigError(f"{env_file} does not exist", fix="run `mlops-platform init` first")
    # Pre-flight. Nothing is changed until every check passes.
    if "db-password" in chosen and settings.db_url:
        raise ConfigError(
            "MLOPS_DB_URL names an external database: its password is not the kit's to change",
            fix="change it on that server, then in MLOPS_DB_URL",
        )
    if "s3-keys" in chosen and not settings.local_seaweedfs:
        raise ConfigError(
            "the S3 keys are an external store's", fix="make new keys there, then set them in .env"
        )
    stack = LocalStack(settings, env_file=env_file)
    running = {s.name for s in stack.status() if s.running}
    postgres = Postgres(settings, StateFile.load(settings.state_dir))
    if "db-password" in chosen and not postgres.running():
        raise StateError(
            "PostgreSQL of the local stack is not running", fix="run `mlops-platform up` first"
        )

    result = RotateResult(env_file)
    restart = False
    for name in chosen:
        needs_restart = SECRETS[name][1]
        # 1. .env first: a failure later is repaired by running `rotate` again.
        fresh = _write_new_values(env_file, name, result, progress)
        # 2. The running service that checks it.
        if name == "db-password":
            postgres.superuser_sql(
                f"ALTER ROLE {sql_ident(fresh.db_user)} "
                f"PASSWORD {sql_literal(fresh.db_password.get_secret_value())};"
            )
            result.applied.append(f"postgres: ALTER ROLE {fresh.db_user}")
            progress(f"{name}: PostgreSQL role {fresh.db_user} has the new password")
        if name == "proxy-password" and fresh.proxy_enabled:
            replace_password(fresh)
            result.applied.append(f"password file: {fresh.proxy_user}")
            progress(f"{name}: {fresh.users_file} updated (nginx reads it on every request)")
        restart = restart or needs_restart
    # 3. The services that read secrets at start.
    if restart and running:
        fresh = load_settings(env_file)
        again = LocalStack(fresh, env_file=env_file)
        again.down(progress)
        up = again.up(progress)
        result.restarted = up.started
    return result


# -- docker compose ------------------------------------------------------------------

# The compose services that read each secret at start (recreated after a rotation), and
# the command each runs to apply it to the running service first.
COMPOSE_READERS: dict[str, tuple[str, ...]] = {
    "db-password": ("tracking", "backup"),
    "s3-keys": ("seaweedfs", "minio", "init", "tracking", "backup"),
    "proxy-password": (),  # the password file: nginx re-copies it within 15 s
    "proxy-secret": ("tracking", "nginx"),
    "flask-secret-key": ("tracking",),
}
# The SQL reaches psql on stdin, never on a command line; CURRENT_USER is the image's role
# (POSTGRES_USER), reached over the container's local socket without its old password.
ALTER_ROLE_COMMAND = (
    "exec",
    "-T",
    "postgres",
    "sh",
    "-c",
    'psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"',
)


@dataclass
class ComposeCall:
    """One `docker compose ARGS` call, and what it reads on stdin (never logged)."""

    args: tuple[str, ...]
    stdin: str | None = None


ComposeRunner = Callable[[ComposeCall], str]


def rotate_compose(
    env_file: Path, names: list[str], *, compose: ComposeRunner, progress: Progress
) -> RotateResult:
    """Rotate ``names`` for the docker compose deployment of ``env_file``.

    The same order as the local stack: .env, then the running service (ALTER ROLE in the
    postgres container, the password file on the host), then `up -d --force-recreate` of
    the running services that read the secret at start. Re-running repairs a failed run.
    """
    chosen = check_names(names)
    if not env_file.is_file():
        raise ConfigError(f"{env_file} does not exist", fix="run `mlops-platform init` first")
    settings = load_settings(env_file, check=False)
    if "s3-keys" in chosen and settings.object_store == "external":
        raise ConfigError(
            "the S3 keys are an external store's", fix="make new keys there, then set them in .env"
        )
    running = set(compose(ComposeCall(("ps", "--services", "--status", "running"))).split())
    if "db-password" in chosen and "postgres" not in running:
        raise StateError(
            "the postgres container is not running", fix="run `docker compose up -d --wait`"
        )
    result = RotateResult(env_file)
    recreate: list[str] = []
    for name in chosen:
        fresh = _write_new_values(env_file, name, result, progress)
        if name == "db-password":
            password = fresh.db_password.get_secret_value().replace("'", "''")
            compose(
                ComposeCall(ALTER_ROLE_COMMAND, f"ALTER ROLE CURRENT_USER PASSWORD '{password}';\n")
            )
            result.applied.append("postgres: ALTER ROLE")
            progress(f"{name}: the postgres container's role has the new password")
        if name == "proxy-password":
            replace_password(fresh)
            result.applied.append(f"password file: {fresh.proxy_user}")
            progress(f"{name}: {fresh.users_file} updated (nginx copies it within 15 s)")
        recreate += [s for s in COMPOSE_READERS[name] if s in running and s not in recreate]
    if recreate:
        compose(ComposeCall(("up", "-d", "--no-deps", "--force-recreate", "--wait", *recreate)))
        result.restarted = recreate
    return result
