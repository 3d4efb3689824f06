"""Ports of the local stack: is one free, which setting moves it, a free one at random."""

from __future__ import annotations

import errno
import random
import socket
from dataclasses import dataclass

from mlops_platform.errors import PortInUseError


@dataclass
class PortClaim:
    port: int
    setting: str  # the variable that moves it, or "" for internal ports picked at random
    host: str = "127.0.0.1"


def bind_error(port: int, host: str = "127.0.0.1") -> int | None:
    """None when ``host:port`` can be bound now, else the errno that refused it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return errno.EADDRNOTAVAIL
        except OSError as exc:
            return exc.errno or errno.EADDRINUSE
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    return bind_error(port, host) is None


def check_ports(claims: list[PortClaim]) -> None:
    for claim in claims:
        error = bind_error(claim.port, claim.host)
        if error is None:
            continue
        host_var = claim.setting.replace("_PORT", "_HOST") if claim.setting else ""
        if error == errno.EADDRNOTAVAIL:
            raise PortInUseError(
                f"{claim.host} is not an address of this machine",
                fix=f"set {host_var or 'the bind address'} to 127.0.0.1, 0.0.0.0 or a local "
                "interface's address",
            )
        if error == errno.EACCES:
            raise PortInUseError(
                f"port {claim.port} needs privileges this user lacks",
                fix=f"set {claim.setting or 'the port'} to 1024 or above",
            )
        if claim.setting:
            fix = f"stop what listens there, or set {claim.setting} to a free port"
        else:
            fix = "run `mlops-platform up` again (internal ports are picked anew)"
        raise PortInUseError(f"port {claim.port} on {claim.host} is already in use", fix=fix)


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_PICK_FLOOR = 10000  # below: the well-known and registered ports people configure by hand


def ephemeral_range(path: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's source ports for outgoing connections (Linux's default when unknown)."""
    try:
        with open(path) as f:
            low, high = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def pick_free_port(avoid: set[int], *, with_offset: int = 0) -> int:
    """A free loopback port (and ``port + with_offset`` free too), not in ``avoid``.

    Picked below the kernel's ephemeral range when there is room: a port in that range
    can be handed to an outgoing connection as its source port, and a connection to a
    port nothing listens on yet can then connect to itself, holding the port the service
    is about to bind (the health probe's `BadStatusLine: GET /health` of one test run).
    """
    low, high = ephemeral_range()
    top = low - with_offset  # both the port and its offset neighbour below the range
    if top - _PICK_FLOOR < 1000:  # an unusual range: anywhere but inside it
        candidates = [p for p in range(1024, 65536 - with_offset) if not low <= p <= high]
    else:
        candidates = list(range(_PICK_FLOOR, top))
    random.shuffle(candidates)
    for port in candidates:
        if port in avoid or port + with_offset in avoid or not port_free(port):
            continue
        if with_offset and not port_free(port + with_offset):
            continue
        return port
    raise PortInUseError("found no free loopback port", fix="free some ports and retry")
