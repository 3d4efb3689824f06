"""What the proxy tests share: nginx -t, settings for a proxy of its own, the loopback URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_platform.settings import PlatformSettings
from tests.conftest import free_port
from tests.integration.conftest import Platform


def loopback_url(platform: Platform) -> str:
    """The proxy by address (a source-bound socket cannot reach `localhost` as ::1)."""
    return f"http://127.0.0.1:{platform.settings.proxy_port}"


def settings_for(root: Path, **values: Any) -> PlatformSettings:
    base = {
        "env": "dev",
        "state_dir": root / "state",
        "proxy_password": "a-long-enough-password-1",
        "proxy_port": free_port(),
        "server_port": free_port(),
    }
    return PlatformSettings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]
