"""The docker-engine tests: deselected, with one line saying why, where no engine answers.

They bring the real docker-compose.yaml up (testcontainers' DockerCompose, the `compose`
extra). Without a Docker engine they are deselected, never skipped or passed; asked for
explicitly (`pytest -m compose`) they run, and fail saying what is missing.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def docker_engine_problem(timeout: float = 2.0) -> str | None:
    """None when a Docker engine answers GET /_ping, else why not (one phrase)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        elif parts.scheme == "tcp":
            sock = socket.create_connection((parts.hostname, parts.port or 2375), timeout)
        else:
            return f"DOCKER_HOST={host} is not a unix:// or tcp:// address"
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except OSError as exc:
        return f"no Docker engine answers at {host} ({exc.__class__.__name__})"
    if b" 200 " not in reply.split(b"\r\n", 1)[0]:
        return f"the Docker engine at {host} does not answer /_ping with 200"
    return None


def _explicitly_selected(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr", "") or ""
    return "compose" in expr and "not compose" not in expr


def deselection_line(config: pytest.Config, count: int | None = None) -> str | None:
    """The one line saying why the docker-engine tests are deselected; None when they run."""
    if _explicitly_selected(config):
        return None
    problem = docker_engine_problem()
    if problem is None:
        return None
    what = f"{count} docker-engine tests" if count is not None else "the docker-engine tests"
    return f"compose: {what} deselected: {problem}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = [item for item in items if item.get_closest_marker("compose")]
    line = deselection_line(config, len(chosen)) if chosen else None
    if line is None:
        return
    items[:] = [item for item in items if not item.get_closest_marker("compose")]
    config.hook.pytest_deselected(items=chosen)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
