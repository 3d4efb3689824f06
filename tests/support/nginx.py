"""nginx in tests: Debian's binary, and `nginx -t` of the kit's template with given values."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from mlops_platform.render import nginx
from tests.support.proc import run


def nginx_binary() -> str:
    """nginx on PATH or in /usr/sbin; fail saying how to install it."""
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if not found:
        pytest.fail(
            "nginx is not installed: apt-get install -y nginx (`make system-deps`)", pytrace=False
        )
    return found


def nginx_test(
    conf: Path, prefix: Path, *flags: str, error_log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`nginx -t FLAGS` of CONF with PREFIX (the error log there unless ERROR_LOG)."""
    log = error_log or prefix / "error.log"
    argv = [nginx_binary(), "-t", *flags, "-c", str(conf), "-p", str(prefix), "-e", str(log)]
    return run(argv)


def check_site(prefix: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of the kit's template filled in with the ``MLOPS_*`` values of ENV, as
    PREFIX/conf.d/mlflow.conf under PREFIX/nginx.conf (conf.d, logs and tmp must exist)."""
    values = {k: v for k, v in env.items() if k.startswith("MLOPS_")}
    (prefix / "conf.d" / "mlflow.conf").write_text(nginx.substitute(nginx.template_text(), values))
    (prefix / "nginx.conf").write_text(nginx.main_conf(prefix, run_as=None))
    return nginx_test(prefix / "nginx.conf", prefix, "-q", error_log=prefix / "logs" / "error.log")
