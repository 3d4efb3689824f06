"""A plain HTTP scope for driving an ASGI app (or one of its parts) without a server."""

from __future__ import annotations

from typing import Any


def http_scope(
    path: str, method: str, headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """The scope uvicorn would hand the app for ``method path`` from a loopback client."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        "app": None,
    }
