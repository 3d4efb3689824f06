"""Refuse, never wait: the one lock primitive of the commands that must not overlap."""

from __future__ import annotations

import fcntl
from typing import IO, Any

from mlops_platform.errors import PlatformError


def hold_exclusive(handle: IO[Any], busy: PlatformError) -> None:
    """Lock the open ``handle`` exclusively, or raise ``busy`` at once if another process
    holds it. The lock lasts until the file is closed."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy from None
