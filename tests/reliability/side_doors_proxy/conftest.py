"""The kit's own nginx, started with fresh counters in front of the session's platform
(the ``platform`` fixture of tests/conftest.py, shared with the integration tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import pytest

from mlops_platform.render import htpasswd
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.conftest import Platform
from tests.reliability.side_doors_proxy.support import OTHER_USER, KitProxy, StartProxy
from tests.support.http import self_signed
from tests.support.stacks import scratch_dir


@pytest.fixture
def start_proxy(platform: Platform) -> Iterator[StartProxy]:
    """Start the kit's nginx (fresh counters) with settings changed as asked."""
    started: list[Proxy] = []
    folders = ExitStack()

    def start(*, tls: bool = False, **update: Any) -> KitProxy:
        root = folders.enter_context(scratch_dir("mlops-sidedoor-"))
        values: dict[str, Any] = {
            "state_dir": root / "state",
            "proxy_port": free_port(),
            "proxy_users_file": None,
            **update,
        }
        cert = None
        if tls:
            cert, key = self_signed(root)
            values.update(proxy_tls_cert_file=cert, proxy_tls_key_file=key)
        settings = platform.settings.model_copy(update=values)
        proxy = Proxy(settings, StateFile.load(settings.state_dir))
        proxy.write_config()
        users = settings.users_file  # a second user behind the same addresses
        users.write_text(htpasswd.with_user(users.read_text(), *OTHER_USER))
        proxy.start(lambda _msg: None)
        started.append(proxy)
        scheme = "https" if tls else "http"
        url = f"{scheme}://127.0.0.1:{settings.proxy_port}"
        return KitProxy(settings, proxy.root, url, urlsplit(platform.url).netloc, cert)

    with folders:  # removed once every proxy is stopped
        try:
            yield start
        finally:
            for proxy in started:
                proxy.stop(lambda _msg: None)
