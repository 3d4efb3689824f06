"""What a dead service leader leaves behind, which PostgreSQL refuses to start beside."""

from __future__ import annotations

import subprocess
import time

from mlops_platform.stack.base import leftovers


def test_an_unreaped_child_is_a_leftover_until_it_is_reaped() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not any("zombie" in entry for entry in leftovers(child.pid)):
        assert time.monotonic() < deadline, leftovers(child.pid)
        time.sleep(0.05)
    child.wait()
    assert leftovers(child.pid) == []


def test_live_members_of_a_dead_leaders_group_are_leftovers() -> None:
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 30 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    orphan = int(leader.stdout.readline())  # type: ignore[union-attr]
    leader.wait()
    try:
        assert [entry.split()[0] for entry in leftovers(leader.pid)] == [str(orphan)]
    finally:
        subprocess.run(["kill", str(orphan)], check=False)
    deadline = time.monotonic() + 10
    while leftovers(leader.pid):
        assert time.monotonic() < deadline, leftovers(leader.pid)
        time.sleep(0.05)
