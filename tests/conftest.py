"""Shared test helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_platform.stack.ports import pick_free_port

# The suite's own MLOPS_ variable: root's default state folder, moved away from the
# machine's /var/lib/mlops-platform. Tests that strip the developer's MLOPS_* keep it.
SUITE_ENV = "MLOPS_SYSTEM_STATE_DIR"
# The free space of the machine's disk is the machine's, not a test stack's health: a CI
# machine with 23 GiB (9 %) free made every "doctor says healthy" test fail. The suite's
# stacks warn under 1 % free (the default lines are tested in tests/unit/test_health.py).
# Set here, on import, so every worker's processes and every stack's CLI inherit them.
DISK_LINES = {"MLOPS_DISK_WARN_FREE_PERCENT": "1", "MLOPS_DISK_FAIL_FREE_PERCENT": "0.5"}
os.environ.update(DISK_LINES)
SUITE_ENVS = frozenset({SUITE_ENV, *DISK_LINES})

# -- running the suite on several workers (pytest-xdist, `make test`) ---------------------
# A worker takes whole modules: a module's tests share its module-scoped stack and run in
# order. Modules that share a stack of the session beyond their own go to one worker
# together (SHARED), so the stack starts once. Each worker that runs a test of the
# session platform starts its own.
SHARED = {
    "tests/integration/test_backup.py": "scratch_stack",
    "tests/integration/test_gc.py": "scratch_stack",
}
# The longest modules first (measured: `pytest --durations=0`, the sum per module), so no
# worker is left with a long one at the end; the rest keep their order, the short unit
# and static tests last, where they fill the gaps.
LONGEST = (
    "tests/integration/test_permissions.py",  # 237 s in one serial run, 2026-12-03
    "tests/integration/test_backup.py",  # 207 s, then test_gc on the same worker
    "tests/integration/test_gc.py",
    "tests/integration/test_docs_executed.py",  # 195 s
    "tests/integration/test_bench.py",  # 160 s
    "tests/reliability/test_rolling_restart.py",  # 150 s
    "tests/integration/test_stack.py",  # 148 s
    "tests/integration/test_doctor.py",  # 130 s
    "tests/reliability/test_faults.py",  # 118 s
    "tests/integration/newcomer/test_first_day.py",  # 106 s
    "tests/reliability/test_side_doors_store.py",  # 96 s
    "tests/integration/test_ui.py",  # 88 s
    "tests/integration/registry/test_promotion_race.py",  # 85 s
    "tests/integration/registry/test_gates.py",  # 81 s
    "tests/integration/test_monitoring.py",  # 81 s
    "tests/integration/test_db.py",  # 78 s
)


def free_port() -> int:
    """A free loopback port whose +10000 neighbour is free too (SeaweedFS uses it for gRPC),
    both below the kernel's ephemeral range, as the kit picks its internal ports."""
    return pick_free_port(set(), with_offset=10000)


@pytest.fixture(scope="session", autouse=True)
def _wait_for_background_downs() -> Iterator[None]:
    """Set up first, torn down last: every stack a test sent down in the background
    (tests.support.stacks.down_later) is down before the session ends, and one that
    failed to go down fails the session."""
    yield
    from tests.support.stacks import wait_for_downs

    failures = wait_for_downs()
    assert not failures, "; ".join(failures)


@pytest.fixture(scope="session")
def platform() -> Iterator[Any]:
    """The real local stack of tests.integration.conftest, once for the whole session."""
    from tests.integration.conftest import platform_stack

    yield from platform_stack()


def clear_mlops_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLOPS_* variable of the developer's shell leaks into a unit test's settings."""
    for key in list(os.environ):
        # MLOPS_SYSTEM_STATE_DIR is the suite's own (root's default state folder moved
        # away from the machine's /var/lib/mlops-platform), not the developer's; the disk
        # lines go too: a unit test's settings have the defaults.
        if key.upper().startswith("MLOPS_") and key != SUITE_ENV:
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _private_config_and_system_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the developer's remembered env file
    (``~/.config/mlops-platform/env-file``; the CLIs a test starts inherit this
    XDG_CONFIG_HOME), nor another test's, and in-process settings never default to the
    real ``/var/lib/mlops-platform`` when the suite runs as root."""
    import mlops_platform.settings as settings_module

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
    system = tmp_path_factory.mktemp("system-state")
    monkeypatch.setenv(SUITE_ENV, str(system))
    monkeypatch.setattr(settings_module, "SYSTEM_STATE_DIR", system)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _rank(nodeid: str) -> tuple[int, int]:
    module = _module(nodeid)
    if module in LONGEST:
        return (0, LONGEST.index(module))
    if module.startswith(("tests/unit/", "tests/static/")):
        return (2, 0)
    return (1, 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (a stable sort: modules and their tests keep their order
    otherwise); every worker collects the same order."""
    items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown to a pytest without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole modules per worker, SHARED modules together, in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return SHARED.get(module, module)

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Run on several workers, collection happens in the workers, whose output is not
    shown: the compose tests' one line on why they are deselected
    (tests/compose/conftest.py) is printed here instead."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if config.pluginmanager.get_plugin("dsession") is None or reporter is None:
        return
    from tests.compose.conftest import deselection_line

    line = deselection_line(config)
    if line is not None:
        reporter.write_line(line)
