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


def _stale_postgres(make_settings, pid: int):  # type: ignore[no-untyped-def]
    from mlops_platform.stack.base import StateFile
    from mlops_platform.stack.postgres import Postgres

    settings = make_settings()
    state = StateFile.load(settings.state_dir)
    service = Postgres(settings, state)
    service.data_dir.mkdir(parents=True)
    (service.data_dir / "postmaster.pid").write_text(f"{pid}\n{service.data_dir}\n")
    service.remember(pid=pid)
    return service


def test_a_pid_reused_by_another_program_clears_the_stale_lock_file(make_settings) -> None:  # type: ignore[no-untyped-def]
    other = subprocess.Popen(["sleep", "30"])
    try:
        service = _stale_postgres(make_settings, other.pid)
        assert not service.running()
        said: list[str] = []
        service.clear_stale(said.append)
        assert not (service.data_dir / "postmaster.pid").exists()
        assert not service.record
        assert any("another program" in line for line in said), said
    finally:
        other.kill()
        other.wait()


def test_an_unreaped_postmaster_is_waited_for_then_named(make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from mlops_platform.errors import ServiceError
    from mlops_platform.stack import postgres

    monkeypatch.setattr(postgres, "STALE_WAIT", 0.5)
    dead = subprocess.Popen(["true"])  # exits, and stays a zombie until waited for
    deadline = time.monotonic() + 10
    while not any("zombie" in entry for entry in leftovers(dead.pid)):
        assert time.monotonic() < deadline, leftovers(dead.pid)
        time.sleep(0.05)
    try:
        service = _stale_postgres(make_settings, dead.pid)
        with pytest.raises(ServiceError) as raised:
            service.clear_stale(lambda _line: None)
        assert f"{dead.pid} (zombie" in str(raised.value)
        assert (service.data_dir / "postmaster.pid").exists()  # PostgreSQL's to judge
    finally:
        dead.wait()
    service.clear_stale(lambda _line: None)  # reaped: nothing left, nothing raised
