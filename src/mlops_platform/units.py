"""The kit's one grammar for ages and one way to print byte counts.

A leaf: it imports nothing of the kit but ``errors``, so ``gc``, ``backup``, the CLI
and the stack can all use it.

An age is what ``--older-than`` takes: days, hours, minutes and seconds in that order,
each optional, whole or decimal (MLflow's own ``gc --older-than`` format: ``30d``,
``12h``, ``1d12h``, ``90m``, ``2d8h5m20s``), weeks (``2w``) before them, or a bare number
read as days (``7``).
"""

from __future__ import annotations

import datetime as dt
import re

from mlops_platform.errors import PlatformError

AGE_FORMS = "30d, 12h, 1d12h, 90m, 45s or 2w (weeks, days, hours, minutes, seconds)"

_NUM = r"\d+(?:\.\d+)?"
_AGE = re.compile(
    rf"^(?:(?P<weeks>{_NUM})w)?(?:(?P<days>{_NUM})d)?(?:(?P<hours>{_NUM})h)?"
    rf"(?:(?P<minutes>{_NUM})m)?(?:(?P<seconds>{_NUM})s)?$"
)
_BARE = re.compile(rf"^{_NUM}$")


def parse_age(text: str, *, error: type[PlatformError] = PlatformError) -> dt.timedelta:
    """``text`` in the age grammar as a timedelta; anything else raises ``error``."""
    value = text.strip()
    if _BARE.match(value):
        return dt.timedelta(days=float(value))
    match = _AGE.match(value)
    parts = {k: float(v) for k, v in match.groupdict().items() if v} if match else {}
    if not parts:
        raise error(f"cannot read the age {text!r}", fix=f"write it like {AGE_FORMS}")
    return dt.timedelta(**parts)


def mlflow_age(age: dt.timedelta) -> str:
    """``age`` written for ``mlflow gc --older-than`` (which reads no weeks and no bare
    number): whole seconds, or milliseconds as a decimal fraction."""
    ms = round(age.total_seconds() * 1000)
    seconds, rest = divmod(ms, 1000)
    return f"{seconds}.{rest:03d}s" if rest else f"{seconds}s"


def human_size(n: float) -> str:
    """Bytes for people, in steps of 1024: ``512 B``, ``1.5 kB``, ``2.0 GB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
