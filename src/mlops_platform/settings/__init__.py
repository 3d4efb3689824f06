"""The platform's settings: the one reader of the environment.

Values come from, highest priority first: explicit arguments, secret files
(``/run/secrets/<name>``, secrets only), ``MLOPS_*`` environment variables,
then the ``.env`` file. Everything else in the package takes a
``PlatformSettings`` as an argument and never looks at ``os.environ``.

The package, one module per part:

- ``sources``: the ``MLOPS_`` prefix, the secret names, secret files
- ``fields``: every setting, its type, default and doc (``docs/configuration.md``)
- ``model``: ``PlatformSettings``: validation and derived values
- ``checks``: the consistency checks behind ``problems()`` and ``config check``
- ``names``: ``MLOPS_*`` names no setting reads (typos)
- ``process``: the executable and environment of a child process
- here: which env file and state folder, and ``load_settings``

Everything callers use is importable from ``mlops_platform.settings`` itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from mlops_platform.errors import ConfigError
from mlops_platform.settings.checks import (
    MIN_PASSWORD_LENGTH,
    MIN_PROXY_SECRET_LENGTH,
    PLACEHOLDERS,
    RESERVED_CONNECTIONS,
)
from mlops_platform.settings.fields import ROLES, Role, S3Purpose, SettingsFields
from mlops_platform.settings.model import PlatformSettings
from mlops_platform.settings.names import closest_setting, unknown_variables
from mlops_platform.settings.process import (
    as_environment,
    inherited_environment,
    installed,
    which,
)
from mlops_platform.settings.sources import (
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    S3_PURPOSE_FIELDS,
    SECRET_FIELDS,
    SecretFilesSource,
)

__all__ = [
    "DEFAULT_SECRETS_DIR",
    "ENV_PREFIX",
    "LOCAL_STATE_DIR",
    "MIN_PASSWORD_LENGTH",
    "MIN_PROXY_SECRET_LENGTH",
    "PLACEHOLDERS",
    "REMEMBERED_NAME",
    "RESERVED_CONNECTIONS",
    "ROLES",
    "S3_PURPOSE_FIELDS",
    "SECRET_FIELDS",
    "SYSTEM_STATE_DIR",
    "EnvFileChoice",
    "PlatformSettings",
    "Role",
    "S3Purpose",
    "SecretFilesSource",
    "SettingsFields",
    "as_environment",
    "closest_setting",
    "default_env_file",
    "find_env_file",
    "inherited_environment",
    "installed",
    "load_settings",
    "remember_env_file",
    "remembered_env_file_path",
    "resolve_state_dir",
    "server_app_settings",
    "state_dir_to_record",
    "system_state_dir",
    "unknown_variables",
    "which",
]

# -- where the env file and the state folder are ------------------------------------

SYSTEM_STATE_DIR = Path("/var/lib/mlops-platform")
LOCAL_STATE_DIR = Path(".mlops-platform")
# Where `init` and `up` remember the env file, so that commands run from another folder
# (a training script's) find it: $XDG_CONFIG_HOME/mlops-platform/env-file.
REMEMBERED_NAME = "env-file"


def remembered_env_file_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlops-platform" / REMEMBERED_NAME


@dataclass(frozen=True)
class EnvFileChoice:
    """Which env file a command reads, and why (``how``: option, variable, cwd,
    remembered, none)."""

    path: Path
    how: str

    @property
    def found(self) -> bool:
        return self.path.is_file()


def find_env_file(explicit: Path | None = None) -> EnvFileChoice:
    """The env file, in this order: ``--env-file``; ``MLOPS_ENV_FILE``; ``./.env``; the
    one `init`/`up` last remembered (``~/.config/mlops-platform/env-file``). When none
    exists the answer is ``./.env`` with ``how="none"`` (where `init` writes one)."""
    if explicit is not None:
        return EnvFileChoice(explicit, "option")
    variable = os.environ.get(f"{ENV_PREFIX}ENV_FILE")
    if variable:
        return EnvFileChoice(Path(variable), "variable")
    local = Path(".env")
    if local.is_file():
        return EnvFileChoice(local, "cwd")
    try:
        remembered = remembered_env_file_path().read_text(encoding="utf-8").strip()
    except (OSError, RuntimeError):
        remembered = ""
    if remembered and Path(remembered).is_file():
        return EnvFileChoice(Path(remembered), "remembered")
    return EnvFileChoice(local, "none")


def remember_env_file(env_file: Path) -> Path | None:
    """Write the env file's absolute path where `find_env_file` looks last; None when the
    home folder cannot take it (a read-only or missing home: nothing is remembered)."""
    target = remembered_env_file_path()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(str(env_file.absolute()) + "\n", encoding="utf-8")
        tmp.replace(target)
    except OSError:
        return None
    return target


def default_env_file() -> Path:
    return find_env_file().path


def resolve_state_dir(
    configured: Path | None, env_file: Path | None, *, as_root: bool | None = None
) -> Path:
    """The state folder: ``MLOPS_STATE_DIR`` (relative to the env file's folder), else
    an existing ``.mlops-platform`` beside the env file (existing state keeps working),
    else ``/var/lib/mlops-platform`` as root (services run as other users, who cannot
    enter a private home), else ``.mlops-platform`` beside the env file."""
    base = env_file.absolute().parent if env_file is not None else Path.cwd()
    if configured is not None:
        return configured if configured.is_absolute() else base / configured
    local = base / LOCAL_STATE_DIR
    if local.is_dir():
        return local
    root = os.geteuid() == 0 if as_root is None else as_root
    return system_state_dir() if root else local


def state_dir_to_record(env_file: Path) -> Path | None:
    """For `init`: the state folder to write into a new env file, or None. Only root's
    system default is written down: docker compose mounts
    ``${MLOPS_STATE_DIR:-.mlops-platform}`` and must find the same password file."""
    if os.environ.get(f"{ENV_PREFIX}STATE_DIR"):
        return None
    resolved = resolve_state_dir(None, env_file)
    return resolved if resolved == system_state_dir() else None


def system_state_dir() -> Path:
    """Root's default state folder; ``MLOPS_SYSTEM_STATE_DIR`` moves it (packagers, and
    test suites that run as root and must not touch the machine's own platform)."""
    moved = os.environ.get(f"{ENV_PREFIX}SYSTEM_STATE_DIR")
    return Path(moved) if moved else SYSTEM_STATE_DIR


# -- loading -----------------------------------------------------------------------


def load_settings(
    env_file: Path | None = None, *, check: bool = True, **overrides: Any
) -> PlatformSettings:
    """Read the settings; raise ``ConfigError`` listing every problem.

    ``check=False`` skips the secret and consistency checks (for `init` and `config check`).
    """
    env_file = env_file if env_file is not None else default_env_file()
    if env_file.exists() and not env_file.is_file():
        raise ConfigError(f"env file {env_file} is not a file", fix="point --env-file at a file")
    if env_file.is_file():
        try:
            env_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read env file {env_file}: {exc.__class__.__name__}",
                fix="make it a readable UTF-8 file",
            ) from None
    try:
        settings = PlatformSettings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(
            "invalid settings: " + "; ".join(_describe(err) for err in exc.errors()),
            fix="fix the variables named above (see `mlops-platform config show`)",
        ) from None
    configured = settings.state_dir if "state_dir" in settings.model_fields_set else None
    state_dir = resolve_state_dir(configured, env_file)
    settings = settings.model_copy(update={"state_dir": state_dir.absolute()})
    if check:
        problems = settings.problems()
        if problems:
            raise ConfigError("; ".join(problems))
    return settings


def server_app_settings() -> PlatformSettings:
    """The settings inside the tracking server's workers: the environment `serve` gave them.

    No ``.env`` is read there (the workers run in the state folder); `serve` passes what
    they need as ``MLOPS_*`` variables.
    """
    return PlatformSettings(_env_file=None)  # type: ignore[call-arg]


def _describe(err: Any) -> str:
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else "?"
    var = f"{ENV_PREFIX}{field.upper()}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    given = err.get("input")
    secret = field in SECRET_FIELDS or (
        field in PlatformSettings.model_fields
        and PlatformSettings.model_fields[field].annotation is SecretStr
    )
    if secret or given is None or isinstance(given, dict):
        return f"{var}: {msg}"
    shown = str(given)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{var}={shown!r}: {msg}"
