"""``MLOPS_*`` names that no setting reads: likely typos, each with the closest real name."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal, overload

from mlops_platform.settings.model import PlatformSettings
from mlops_platform.settings.sources import ENV_PREFIX


@overload
def unknown_variables(
    env_file: Path | None = None, *, with_closest: Literal[False] = False
) -> list[str]: ...


@overload
def unknown_variables(
    env_file: Path | None = None, *, with_closest: Literal[True]
) -> list[tuple[str, str | None]]: ...


def unknown_variables(
    env_file: Path | None = None, *, with_closest: bool = False
) -> list[str] | list[tuple[str, str | None]]:
    """``MLOPS_*`` names in the environment or .env that no setting reads (likely typos);
    ``with_closest``: each with the closest real name (difflib), or None."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in PlatformSettings.model_fields}
    known |= {f"{ENV_PREFIX}ENV_FILE", f"{ENV_PREFIX}SYSTEM_STATE_DIR"}
    names = {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    if env_file is not None and env_file.is_file():
        for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip().upper()
            if key.startswith(ENV_PREFIX):
                names.add(key)
    unknown = sorted(names - known)
    if not with_closest:
        return unknown
    return [(name, closest_setting(name, known)) for name in unknown]


def closest_setting(name: str, known: set[str] | None = None) -> str | None:
    """The real ``MLOPS_*`` name closest to a mistyped one, or None when none is close."""
    if known is None:
        known = {f"{ENV_PREFIX}{n.upper()}" for n in PlatformSettings.model_fields}
    near = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
    return near[0] if near else None
