"""MLflow's WSGI bridge and the kit's, side by side: one Flask view under uvicorn.

Starts uvicorn (with ``httptools`` and ``uvloop``, as the kit's server runs) on a FastAPI
app that mounts one Flask app, through MLflow's ``_EfficientWSGIMiddleware`` or through
:class:`mlops_platform.wsgi_bridge.FlaskBridge`, alternately, and times one kept-alive
client's requests for a 1 KB JSON answer (a 10-point metric history's size) and the
server's CPU per request; then a file Flask sends (``send_file``, as MLflow's
``get-artifact`` does for a store nginx does not fetch from) read by a fast client: the
rate. Loopback only. (What the kit's bridge holds for a slow client is a unit test:
tests/unit/test_wsgi_bridge.py.)

    python -m benchmarks.wsgi_bridge [--requests 3000] [--rounds 3] [--file-mb 256]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

from mlops_platform.stack.base import wait_until
from tests.conftest import free_port

BRIDGES = ("mlflow", "kit")
_CHOICE = "MLOPS_BENCH_BRIDGE"
_FILE = "MLOPS_BENCH_FILE"
_POINTS = [
    {"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_000, "step": i} for i in range(10)
]
BODY = json.dumps({"metrics": _POINTS}, indent=2)  # MLflow's layout, ~1 KB


def app() -> Any:
    """The app uvicorn serves (``--factory``): the bridge named by MLOPS_BENCH_BRIDGE."""
    from fastapi import FastAPI
    from flask import Flask, Response, send_file

    flask_app = Flask("bench")

    @flask_app.get("/api/history")
    def history() -> Response:
        return Response(BODY, mimetype="application/json")

    @flask_app.get("/file")
    def file() -> Response:
        return send_file(os.environ[_FILE], mimetype="application/octet-stream")

    with warnings.catch_warnings():  # imported by both, as the kit's server imports it
        warnings.filterwarnings("ignore", "starlette.middleware.wsgi is deprecated")
        from mlflow.server.fastapi_app import _EfficientWSGIMiddleware

    from mlops_platform.wsgi_bridge import FlaskBridge

    served = FastAPI()
    bridge = FlaskBridge if os.environ[_CHOICE] == "kit" else _EfficientWSGIMiddleware
    served.mount("/", bridge(flask_app))
    return served


def _get(connection: http.client.HTTPConnection, path: str = "/api/history") -> bytes:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"the server answered {response.status}: {body[:200]!r}")
    return body


def _read_file(connection: http.client.HTTPConnection) -> tuple[int, float]:
    """GET /file in 1 MB reads: (bytes, seconds)."""
    start = time.perf_counter()
    connection.request("GET", "/file")
    response, size = connection.getresponse(), 0
    while piece := response.read(1 << 20):
        size += len(piece)
    return size, time.perf_counter() - start


def _connect(port: int, server: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    """A kept-alive connection to the server on PORT, once it answers."""

    def answers() -> bool:
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as c:
            try:
                _get(c)
            except OSError:
                return False
            return True

    wait_until(answers, timeout=60, what="uvicorn (its output is above)",
               alive=lambda: server.poll() is None, interval=0.1)  # fmt: skip
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def one_round(bridge: str, requests: int, file: Path) -> dict[str, float]:
    """Start a server on ``bridge``, warm it, time REQUESTS requests (p50 ms, CPU ms
    each), then read FILE through it (MB/s)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.wsgi_bridge:app"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env={**os.environ, _CHOICE: bridge, _FILE: str(file)})
    try:
        connection = _connect(port, server)
        for _ in range(300):
            _get(connection)
        process = psutil.Process(server.pid)
        cpu_before = sum(process.cpu_times()[:2])
        seconds = []
        for _ in range(requests):
            start = time.perf_counter()
            body = _get(connection)
            seconds.append(time.perf_counter() - start)
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        if body != BODY.encode():
            raise SystemExit(f"the {bridge} bridge answered other bytes")
        size, file_seconds = _read_file(connection)
        if size != file.stat().st_size:
            raise SystemExit(f"the {bridge} bridge sent {size} bytes of the file")
        connection.close()
        return {
            "p50_ms": statistics.median(seconds) * 1e3,
            "cpu_ms": cpu / requests * 1e3,
            "file_mb_s": size / 2**20 / file_seconds,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wsgi_bridge")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file-mb", type=int, default=256)
    args = parser.parse_args(argv)
    samples: dict[str, list[dict[str, float]]] = {b: [] for b in BRIDGES}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-bridge-") as folder:
        file = Path(folder) / "file.bin"
        with open(file, "wb") as out:
            for _ in range(args.file_mb):
                out.write(os.urandom(1 << 20))
        for _ in range(args.rounds):
            for bridge in BRIDGES:
                samples[bridge].append(one_round(bridge, args.requests, file))
    result = {
        b: {k: statistics.median(s[k] for s in samples[b]) for k in samples[b][0]} for b in BRIDGES
    }
    print(
        f"one client, {args.requests} requests a round, then one {args.file_mb} MB file; "
        f"medians of {args.rounds} rounds"
    )
    print("| bridge | p50 ms | server CPU ms a request | file MB/s |")
    print("|---|---|---|---|")
    for bridge, r in result.items():
        print(f"| {bridge} | {r['p50_ms']:.3f} | {r['cpu_ms']:.3f} | {r['file_mb_s']:.0f} |")
    mlflow, kit = result["mlflow"], result["kit"]
    print(
        f"kit / MLflow: p50 {kit['p50_ms'] / mlflow['p50_ms']:.2f}x the time, "
        f"CPU {kit['cpu_ms'] / mlflow['cpu_ms']:.2f}x, file rate "
        f"{kit['file_mb_s'] / mlflow['file_mb_s']:.2f}x"
    )
    return result


if __name__ == "__main__":
    main()
