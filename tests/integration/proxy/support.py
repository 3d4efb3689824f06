"""What the proxy tests share: nginx -t, settings for a proxy of its own, the loopback URL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops_platform.settings import PlatformSettings
from tests.conftest import free_port
from tests.integration.conftest import Platform


def loopback_url(platform: Platform) -> str:
    """The proxy by address (a source-bound socket cannot reach `localhost` as ::1)."""
    return f"http://127.0.0.1:{platform.settings.proxy_port}"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if not found:
        pytest.fail("nginx is not installed: apt-get install -y nginx", pytrace=False)
    return found


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_for(root: Path, **values: Any) -> PlatformSettings:
    base = {
        "env": "dev",
        "state_dir": root / "state",
        "proxy_password": "a-long-enough-password-1",
        "proxy_port": free_port(),
        "server_port": free_port(),
    }
    return PlatformSettings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]
