"""What the proxy's side-door tests share: the started nginx, status helpers, and the
recording server that stands where MLflow would.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from mlops_platform.settings import PlatformSettings
from tests.support.http import client

OTHER_USER = ("bob", "Bob-Kt7-Wq2p-Zm9x-Lr4v")
BURST_MB = 100


@dataclass
class KitProxy:
    settings: PlatformSettings
    root: Path  # <state_dir>/nginx
    url: str
    public_host: str  # the Host MLflow accepts (the session stack's public name)
    cert: Path | None = None

    def client(self, source: str, auth: tuple[str, str] | None = None) -> requests.Session:
        """A client on its own loopback address, sending the public name as Host."""
        session = client(source, auth)
        session.headers["Host"] = self.public_host
        return session

    def access_log(self, requests_sent: int = 0) -> list[dict[str, Any]]:
        """The access log's entries, once it holds at least ``requests_sent`` of them.

        nginx writes a request's line after the response has gone out, so a client can
        hold its answer a moment before the line exists; wait for it rather than race.
        """
        path = self.root / "logs" / "access.log"
        deadline = time.monotonic() + 10
        while True:
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            if len(lines) >= requests_sent or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)

    def error_log(self) -> str:
        return (self.root / "logs" / "error.log").read_text()


StartProxy = Callable[..., KitProxy]


def codes(session: requests.Session, url: str, auths: list[Any], **kwargs: Any) -> list[int]:
    return [session.get(url, auth=auth, timeout=30, **kwargs).status_code for auth in auths]


def first_429(statuses: list[int]) -> int:
    assert 429 in statuses, statuses
    index = statuses.index(429)
    assert set(statuses[:index]) == {401} and set(statuses[index:]) == {429}, statuses
    return index


class Recorder(http.server.ThreadingHTTPServer):
    """Stands where MLflow would and records the headers nginx forwards, nothing more."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.hold: threading.Event | None = None  # set: answers wait until it is released
        self.arrived = threading.Semaphore(0)
        super().__init__(("127.0.0.1", port), RecordingHandler)


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.server.arrived.release()
        if self.server.hold is not None:
            self.server.hold.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass
