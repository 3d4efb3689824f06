"""The negative control: a broken proxy must make the same check fail."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests

from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.conftest import free_port
from tests.integration.access_control.support import check_proxy
from tests.integration.conftest import Platform
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration


ARTIFACTS_LOCATION = "location ^~ /api/2.0/mlflow-artifacts/ {\n"
TRAVERSAL_RULE = re.compile(
    r"\n    if \(\$request_uri ~\* \"\(\^\|\[/=\?&\]\|%2f.*?\n    \}\n", re.S
)

BROKEN_VARIANTS = {
    # the artifact routes without a password: anonymous requests reach MLflow
    "artifacts without auth": lambda conf: _replace_once(
        conf, ARTIFACTS_LOCATION, ARTIFACTS_LOCATION + "        auth_basic off;\n"
    ),
    # the traversal rule gone: encoded `..` is no longer refused before authentication
    "no traversal rule": lambda conf: _sub_once(conf, TRAVERSAL_RULE, "\n"),
}


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the rendered configuration no longer has {old!r}"
    return text.replace(old, new)


def _sub_once(text: str, pattern: re.Pattern[str], new: str) -> str:
    result, count = pattern.subn(new, text)
    assert count == 1, f"the rendered configuration no longer matches {pattern.pattern!r}"
    return result


@pytest.fixture
def broken_proxy(platform: Platform) -> Iterator[tuple[Platform, dict[str, int]]]:
    """One nginx per broken variant, in front of the session stack's tracking server."""
    ports: dict[str, int] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as folders:  # removed once every nginx has stopped
        try:
            for name, breaks in BROKEN_VARIANTS.items():
                root = folders.enter_context(scratch_dir("mlops-broken-proxy-"))
                port = free_port()
                settings = platform.settings.model_copy(
                    update={
                        "state_dir": root,
                        "proxy_port": port,
                        "proxy_users_file": platform.settings.users_file,
                    }
                )
                proxy = Proxy(settings, StateFile.load(root))
                proxy.write_config()
                site = proxy.root / "conf.d" / "mlflow.conf"
                original = site.read_text()
                site.write_text(breaks(original))
                assert site.read_text() != original
                log = open(proxy.root / "logs" / "nginx.log", "wb")  # noqa: SIM115 - closed below
                proc = subprocess.Popen(
                    [
                        proxy.binary(),
                        "-c",
                        str(proxy.root / "nginx.conf"),
                        "-p",
                        str(proxy.root),
                        "-e",
                        str(proxy.root / "logs" / "error.log"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                log.close()
                procs.append(proc)
                deadline = time.monotonic() + 30
                while True:
                    assert proc.poll() is None, (proxy.root / "logs" / "error.log").read_text()
                    try:
                        if requests.get(f"http://127.0.0.1:{port}/-/proxy-health", timeout=2).ok:
                            break
                    except requests.RequestException:
                        pass
                    assert time.monotonic() < deadline, f"the broken nginx ({name}) did not start"
                    time.sleep(0.1)
                ports[name] = port
            yield platform, ports
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)


def test_a_broken_proxy_fails_the_check(broken_proxy: tuple[Platform, dict[str, int]]) -> None:
    platform, ports = broken_proxy
    artifacts = check_proxy(platform, ports["artifacts without auth"]).problems
    # Anonymous artifact requests now reach MLflow. With MLflow's permissions on, the
    # tracking server answers them 401 itself, so the status alone would not tell: the
    # tracking log does.
    assert any("reached the tracking server" in p and "mlflow-artifacts" in p for p in artifacts), (
        artifacts
    )
    assert all("mlflow-artifacts" in p for p in artifacts), artifacts

    traversal = check_proxy(platform, ports["no traversal rule"]).problems
    # nginx itself still refuses some (a path above the root); the rule's own cases go on
    assert any(
        p.startswith("encoded /api/2.0/mlflow/../mlflow/") and "got 401, expected 400" in p
        for p in traversal
    ), traversal
    assert all("expected 400" in p for p in traversal), traversal
    print(
        f"\nNEGATIVE CONTROL: artifacts without auth -> {len(artifacts)} problems "
        f"({sum('reached the tracking server' in p for p in artifacts)} reached MLflow); "
        f"no traversal rule -> {len(traversal)} problems"
    )
