"""The lock of commands that must not overlap: the second one is refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_platform.errors import StateError
from mlops_platform.locks import hold_exclusive


def test_a_held_lock_refuses_the_next_holder_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    busy = StateError("another command is working here", fix="wait for it to finish")
    with open(path, "w") as first:
        hold_exclusive(first, busy)
        with open(path, "w") as second, pytest.raises(StateError) as refused:
            hold_exclusive(second, busy)  # flock: one holder per open file, even in-process
        assert refused.value is busy
    with open(path, "w") as third:  # released with the first file
        hold_exclusive(third, busy)
