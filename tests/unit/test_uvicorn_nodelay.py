"""The TCP_NODELAY fix for multi-worker uvicorn (uvicorn #3149), checked on real sockets."""

from __future__ import annotations

import asyncio
import socket

import uvicorn.config

from mlops_platform import uvicorn_nodelay
from mlops_platform.mlflow_server import RUNNER, swap_runner


async def _nodelay_of_accepted(sock: socket.socket) -> int:
    """Serve on ``sock`` with asyncio as uvicorn does; report TCP_NODELAY of the accepted one."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[int] = loop.create_future()

    class Report(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(Report, sock=sock)
    port = sock.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    value = await asyncio.wait_for(seen, 5)
    writer.close()
    server.close()
    await server.wait_closed()
    return value


def _bound(config: uvicorn.config.Config) -> socket.socket:
    sock = config.bind_socket()
    sock.setblocking(False)
    return sock


def test_patched_multiworker_socket_has_nodelay_whatever_uvicorn_does() -> None:
    """Older uvicorn loses TCP_NODELAY with ``--workers``; a fixed one keeps it. Either way
    the patched socket has it, and where uvicorn already binds a TCP socket the patch
    leaves that socket alone."""
    original = uvicorn.config.Config.bind_socket
    try:
        config = uvicorn.config.Config(app="x:y", host="127.0.0.1", port=0, workers=2)
        plain = _bound(config)
        uvicorn_fixed = plain.proto == socket.IPPROTO_TCP
        assert (asyncio.run(_nodelay_of_accepted(plain)) != 0) == uvicorn_fixed
        uvicorn_nodelay.patch()
        fixed = _bound(uvicorn.config.Config(app="x:y", host="127.0.0.1", port=0, workers=2))
        assert fixed.proto == socket.IPPROTO_TCP
        assert asyncio.run(_nodelay_of_accepted(fixed)) != 0
    finally:
        uvicorn.config.Config.bind_socket = original  # type: ignore[method-assign]


def test_patch_keeps_a_socket_that_already_says_tcp() -> None:
    original = uvicorn.config.Config.bind_socket
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        uvicorn.config.Config.bind_socket = lambda self: tcp  # type: ignore[method-assign]
        uvicorn_nodelay.patch()
        assert uvicorn.config.Config(app="x:y").bind_socket() is tcp
    finally:
        uvicorn.config.Config.bind_socket = original  # type: ignore[method-assign]
        tcp.close()


def test_swap_runner() -> None:
    command = ["/py", "-m", "uvicorn", "--host", "h", "app:app"]
    assert swap_runner(command) == ["/py", "-m", RUNNER, "--host", "h", "app:app"]
    assert swap_runner(["/py", "-m", "gunicorn", "app"]) is None
