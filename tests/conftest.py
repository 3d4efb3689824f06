"""Shared test helpers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# The suite's own MLOPS_ variable: root's default state folder, moved away from the
# machine's /var/lib/mlops-platform. Tests that strip the developer's MLOPS_* keep it.
SUITE_ENV = "MLOPS_SYSTEM_STATE_DIR"


def free_port() -> int:
    """A free loopback port whose +10000 neighbour is free too (SeaweedFS uses it for gRPC)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


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
        # away from the machine's /var/lib/mlops-platform), not the developer's.
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
