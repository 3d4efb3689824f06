"""Shared test helpers."""

from __future__ import annotations

import os
import socket

import pytest


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


def clear_mlops_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLOPS_* variable of the developer's shell leaks into a unit test's settings."""
    for key in list(os.environ):
        if key.upper().startswith("MLOPS_"):
            monkeypatch.delenv(key)
