"""The unix sockets ``weed`` binds in /tmp, and their removal once it has stopped.

weed binds a unix socket beside each of its gRPC ports, under names of its own in /tmp
that no flag moves, and leaves the S3 gateway's behind on every stop (every one when it
is killed). The local stack records the ports of each start; once weed is stopped or
found dead, the sockets of those ports that no process answers on are removed.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

GRPC_OFFSET = 10000  # weed's default gRPC port is the HTTP port + 10000
INTERNAL = ("master", "volume", "filer")
# The name weed gives the socket of a gRPC port.
GRPC_SOCKET = "/tmp/seaweedfs-{name}-grpc-{port}.sock"


def grpc_sockets(ports: dict[str, int]) -> list[Path]:
    """The /tmp sockets weed binds for the gRPC ports of ``ports`` (a start's record)."""
    out = [
        Path(GRPC_SOCKET.format(name=name, port=ports[name] + GRPC_OFFSET))
        for name in INTERNAL
        if name in ports
    ]
    if "s3_grpc" in ports:
        out.append(Path(GRPC_SOCKET.format(name="s3", port=ports["s3_grpc"])))
    return out


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def remove_stale_sockets(paths: list[Path], settle: float = 0.0) -> list[Path]:
    """Remove each of ``paths`` that is a socket no process answers on (and, unless this
    is root, one of this user's); return those removed. A socket that answers is asked
    again until ``settle`` seconds have passed (a process that has just ended can hold its
    sockets a moment longer), then left alone: another weed may have taken the port."""
    deadline = time.monotonic() + settle
    removed = []
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISSOCK(info.st_mode) or os.geteuid() not in (0, info.st_uid):
            continue
        while _answers(path):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        else:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
