"""After the first day: a changed or lost SSE key is named by `doctor`, and `up` applies a
new proxy password without a restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


def _with_env_value(env_file: Path, name: str, value: str | None) -> str:
    """Set (or drop, with None) ``name`` in the env file; return the old text."""
    old = env_file.read_text()
    lines = [line for line in old.splitlines() if not line.startswith(f"{name}=")]
    if value is not None:
        lines.append(f"{name}={value}")
    env_file.write_text("\n".join(lines) + "\n")
    return old


def test_doctor_names_a_changed_or_lost_sse_key(platform: Platform) -> None:
    healthy = json.loads(platform.cli("doctor", "--json", check=False).stdout)
    key = [f for f in healthy["findings"] if f["check"] == "encryption key"]
    assert [f["status"] for f in key] == ["ok"], key
    assert [f["status"] for f in healthy["findings"] if f["check"] == "encryption"] == ["ok"]
    for value, words in (("ab" * 32, "MLOPS_S3_SSE_KEK changed"), (None, "is not set")):
        old = _with_env_value(platform.env_file, "MLOPS_S3_SSE_KEK", value)
        try:
            doctor = platform.cli("doctor", "--json", check=False)
            up = platform.cli("up", check=False)
        finally:
            platform.env_file.write_text(old)
        assert doctor.returncode == 2
        found = [f for f in json.loads(doctor.stdout)["findings"] if f["status"] == "fail"]
        named = [f for f in found if f["check"] == "encryption key" and words in f["detail"]]
        assert named, found
        assert "put the previous MLOPS_S3_SSE_KEK back" in named[0]["remedy"]
        # up on the running stack reloads nginx only: the running SeaweedFS keeps its key.
        assert up.returncode == 0, up.stderr


def test_up_applies_a_new_proxy_password_without_a_restart(platform: Platform) -> None:
    import requests

    url = f"{platform.url}/api/2.0/mlflow/experiments/search?max_results=1"
    new = "N3w-pr0xy-passw0rd-" + os.urandom(6).hex()
    old = _with_env_value(platform.env_file, "MLOPS_PROXY_PASSWORD", new)
    try:
        up = platform.cli("up")
        assert "reloaded nginx" in up.stdout, up.stdout
        assert requests.get(url, auth=(platform.user, new), timeout=10).status_code == 200
        assert (
            requests.get(url, auth=(platform.user, platform.password), timeout=10).status_code
            == 401
        )
    finally:
        platform.env_file.write_text(old)
        platform.cli("up")
    assert requests.get(url, auth=(platform.user, platform.password), timeout=10).status_code == 200
    logs = platform.cli("logs", "nginx", "-n", "5").stdout
    assert "access.log" in logs and "error.log" in logs  # tail's headers: both files shown
