"""Streamed artifact downloads: the pieces that need no running server."""

from __future__ import annotations

import sys

import pytest

from mlops_platform import artifact_stream
from mlops_platform.mlflow_server import rewrite


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", "bytes=0-99"),
        ("bytes=100-", "bytes=100-"),
        ("bytes=-5", "bytes=-5"),
        (" bytes = 3 - 4 ", "bytes=3-4"),
        ("bytes=0-1,5-6", None),  # several ranges: the whole object
        ("bytes=9-1", None),
        ("bytes=-", None),
        ("items=0-1", None),
        ("", None),
        (None, None),
    ],
)
def test_only_one_plain_range_is_passed_on(header: str | None, expected: str | None) -> None:
    assert artifact_stream.s3_range(header) == expected


def test_the_uvicorn_command_gets_the_kits_runner_and_app() -> None:
    from mlflow.server import _build_uvicorn_command

    plain = _build_uvicorn_command(None, "127.0.0.1", 5000, 2, "mlflow.server.fastapi_app:app")
    cmd = rewrite(plain)
    assert cmd[:3] == [sys.executable, "-m", "mlops_platform.uvicorn_nodelay"]
    assert cmd[-2:] == ["--factory", "mlops_platform.artifact_stream:create_default_app"]
    auth = _build_uvicorn_command(
        None, "127.0.0.1", 5000, 2, "mlops_platform.auth_app:create_app", is_factory=True
    )
    cmd = rewrite(auth, nodelay=False)
    assert cmd[:3] == [sys.executable, "-m", "uvicorn"]
    assert cmd[-1] == "mlops_platform.artifact_stream:create_auth_app"
    assert cmd.count("--factory") == 1
    # an app the kit does not know is left alone
    other = [*plain[:-1], "someone.else:app"]
    assert rewrite(other, nodelay=False) == other


def test_both_download_routes_get_the_streamed_view() -> None:
    from starlette.routing import Match

    app = artifact_stream.create_default_app()
    for prefix in ("/api", "/ajax-api"):
        path = f"{prefix}/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.bin"
        for method, streamed in (("GET", True), ("PUT", False)):
            scope = {"type": "http", "path": path, "method": method, "root_path": ""}
            first = next(r for r in app.router.routes if r.matches(scope)[0] == Match.FULL)
            is_ours = getattr(first, "endpoint", None) is artifact_stream.download_artifact
            assert is_ours is streamed, (method, path)
