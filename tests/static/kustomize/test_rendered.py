"""The overlay rendered from a cloud-style settings set, built and validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from mlops_platform.render import k8s, nginx
from mlops_platform.settings import SECRET_FIELDS, PlatformSettings
from tests.static.kustomize.support import (
    CLOUD_DB,
    CRD_KINDS,
    IRSA,
    SECRETS,
    Doc,
    by_name,
    containers,
    pod,
    render_overlay,
    validate,
)

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
