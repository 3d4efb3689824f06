"""The Kustomize base and the kit's overlays; the CLI's refusals and the overlay it writes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mlops_platform.render import k8s, nginx
from mlops_platform.settings import PlatformSettings
from tests.static.kustomize.support import (
    CLOUD_DB,
    KUBE,
    ROOT,
    build,
    by_name,
    containers,
    pod,
    validate,
)
from tests.support.proc import clean_env, run_cli

# -- the base and the kit's overlays ----------------------------------------------


@pytest.mark.parametrize("folder", ["base", "overlays/dev", "overlays/production", "storage"])
def test_every_kit_overlay_builds_and_validates_strictly(folder: str) -> None:
    docs = build(KUBE / folder)
    validate(docs)
    assert docs
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            spec = pod(doc)
            assert spec["automountServiceAccountToken"] is False, doc["metadata"]["name"]
            assert spec["serviceAccountName"], doc["metadata"]["name"]
            for c in containers(doc).values():
                assert c["resources"]["limits"]["ephemeral-storage"], c["name"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]


def test_the_validator_rejects_a_broken_build() -> None:
    import kubernetes_validate as kv

    deployment = by_name(build(KUBE / "base"))["Deployment/mlflow-tracking"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        validate([deployment])
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kv.ValidationError):
        validate([deployment])


def test_the_pdb_only_with_two_replicas_or_more() -> None:
    dev = by_name(build(KUBE / "overlays" / "dev"))
    prod = by_name(build(KUBE / "overlays" / "production"))
    assert dev["Deployment/mlflow-tracking"]["spec"]["replicas"] == 1
    assert "PodDisruptionBudget/mlflow-tracking" not in dev
    assert prod["Deployment/mlflow-tracking"]["spec"]["replicas"] == 2
    assert "PodDisruptionBudget/mlflow-tracking" in prod
    assert dev["Namespace/mlops-dev"]
    assert {
        d["metadata"].get("namespace") for k, d in dev.items() if k != "Namespace/mlops-dev"
    } == {"mlops-dev"}


def test_the_base_nginx_files_are_the_kits() -> None:
    """The base's copies of the template and the snippet never drift from the sources."""
    assert (KUBE / "base" / "nginx" / nginx.TEMPLATE_NAME).read_text() == nginx.template_text()
    snippet = (KUBE / "base" / "nginx" / k8s.PROXY_SECRET_SNIPPET).read_text()
    assert snippet == (ROOT / "scripts" / "nginx-proxy-secret").read_text()
    assert snippet == k8s.proxy_secret_snippet()
    # The base's sidecar values name every variable the template needs (but the secret).
    base_env = dict(
        line.split("=", 1)
        for line in (KUBE / "base" / "nginx.env").read_text().splitlines()
        if line.strip()
    )
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed - set(base_env) == {"MLOPS_PROXY_SECRET"}
    assert set(base_env) == set(k8s.nginx_env(PlatformSettings(_env_file=None)))  # type: ignore[call-arg]


def test_every_command_of_the_base_parses_and_never_prompts() -> None:
    import shlex

    import typer.main

    from mlops_platform.cli import app

    command = typer.main.get_command(app)
    found: list[list[str]] = []
    for doc in build(KUBE / "base"):
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        for c in containers(doc).values():
            argv = c.get("command", [])
            if argv[:2] == ["sh", "-c"]:
                for part in argv[2].split("&&"):
                    found.append(shlex.split(part)[1:])
            elif argv[:1] == ["mlops-platform"]:
                found.append(argv[1:])
    assert len(found) == 7, found  # migrate, wait, serve, backup (2), verify, gc
    for args in found:
        cmd, rest = command, list(args)
        while hasattr(cmd, "list_commands"):  # a group: descend into the sub-command
            sub = cmd.get_command(cmd.context_class(cmd), rest[0])  # type: ignore[attr-defined]
            assert sub is not None, args
            cmd, rest = sub, rest[1:]
        cmd.make_context(cmd.name or "", rest)  # raises on an unknown option or argument
        if args[:2] == ["backup", "prune"]:
            assert "--yes" in args, args


# -- refusals, through the CLI ---------------------------------------------------


def _render_cli(tmp_path: Path, env_lines: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".env").write_text("\n".join(env_lines) + "\n")
    env = clean_env(MLOPS_SECRETS_DIR=str(tmp_path / "none"), COLUMNS="200")
    args = ("deploy", "render", "k8s", "--out", "ov", "--base", str(KUBE / "base"))
    return run_cli(*args, env=env, cwd=tmp_path)


def test_init_settings_are_refused_with_the_variable_to_set(tmp_path: Path) -> None:
    init = run_cli("init", env=clean_env(), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    result = _render_cli(tmp_path, (tmp_path / ".env").read_text().splitlines())
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "MLOPS_DB" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "ov").exists()


def test_the_cli_writes_an_overlay_that_builds(tmp_path: Path) -> None:
    result = _render_cli(
        tmp_path,
        [
            f"MLOPS_DB_URL={CLOUD_DB.replace(':url-password-987654', '')}",
            "MLOPS_PUBLIC_URL=https://mlflow.acme.example",
            "MLOPS_OBJECT_STORE=external",
        ],
    )
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "--from-file=db_password=" in out and "s3_access_key_id" not in out
    assert "--from-file=proxy_password" not in out
    assert "kubectl apply -k ov" in out
    docs = build(tmp_path / "ov")
    validate(docs)
