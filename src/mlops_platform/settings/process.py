"""What a child process starts from: its executable and its environment.

The settings are the one reader of ``os.environ``; processes the kit starts get the
environment from here, with the ``MLOPS_*`` values of a settings object where needed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pydantic import SecretStr

from mlops_platform.settings.model import PlatformSettings
from mlops_platform.settings.sources import ENV_PREFIX

# What the kit and every process it starts create is for their owner only: no group or
# other access unless granted on purpose (docs/reliability.md, "Nothing readable at rest").
PRIVATE_UMASK = 0o077


def which(name: str) -> str | None:
    """``shutil.which`` that also accepts an absolute path to an executable."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) and Path(name).is_file() else None
    return shutil.which(name)


def installed(name: str) -> str | None:
    """The executable NAME beside this Python (a wheel's binary in the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def inherited_environment(*, keep_settings: bool = True) -> dict[str, str]:
    """The environment a child process starts from; ``keep_settings=False`` drops ``MLOPS_*``."""
    return {
        k: v for k, v in os.environ.items() if keep_settings or not k.upper().startswith(ENV_PREFIX)
    }


def as_environment(settings: PlatformSettings, *names: str) -> dict[str, str]:
    """``MLOPS_*`` variables that make a child process read the same values for ``names``."""
    out: dict[str, str] = {}
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[f"{ENV_PREFIX}{name.upper()}"] = "" if value is None else str(value)
    return out
