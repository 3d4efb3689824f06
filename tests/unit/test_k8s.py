"""Kubernetes manifests: valid against the 1.37 schemas (offline), no secret inlined."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_platform.render import k8s
from mlops_platform.settings import PlatformSettings
from tests.conftest import clear_mlops_env

SECRETS = {
    "db_password": "db-secret-value-1234",
    "s3_access_key_id": "MLOPSKEYID12345",
    "s3_secret_access_key": "s3-secret-value-1234",
    "flask_secret_key": "flask-secret-value-1234",
    "proxy_password": "proxy-secret-value-1234",
}
K8S_VERSION = "1.37.0"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    clear_mlops_env(monkeypatch)
    return PlatformSettings(  # type: ignore[call-arg]
        _env_file=None,
        state_dir=tmp_path,
        db_url="postgresql://mlflow:url-password-987654@db.internal:6432/mlflow",
        object_store="external",
        s3_endpoint_url="https://s3.internal:9000",
        public_url="https://mlflow.corp.example",
        **SECRETS,
    )


def _validator():  # type: ignore[no-untyped-def]
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[test]'", pytrace=False)
    return kubernetes_validate


def _all(files: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return [doc for text in files.values() for doc in yaml.safe_load_all(text)]


def test_every_manifest_validates_strictly_offline(settings: PlatformSettings) -> None:
    kv = _validator()
    files = k8s.render(settings, k8s.K8sOptions(model_name="iris-classifier"))
    docs = _all(files)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == sorted(
        [
            "Namespace/mlops",
            "ConfigMap/mlops-platform-config",
            "Job/mlflow-db-migrate",
            "Deployment/mlflow-tracking",
            "Service/mlflow-tracking",
            "PodDisruptionBudget/mlflow-tracking",
            "Ingress/mlflow-tracking",
            "NetworkPolicy/mlflow-tracking",
            "Deployment/model-serving",
            "Service/model-serving",
            "Ingress/model-serving",
            "HorizontalPodAutoscaler/model-serving",
            "PersistentVolumeClaim/mlops-backups",
            "CronJob/mlops-backup",
        ]
    )
    for doc in docs:
        assert kv.validate(doc, K8S_VERSION, strict=True) == "1.37"


def test_validator_rejects_a_broken_manifest(settings: PlatformSettings) -> None:
    kv = _validator()
    deployment = k8s.tracking(settings, k8s.K8sOptions())[0]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_no_secret_value_is_rendered(settings: PlatformSettings) -> None:
    text = "".join(k8s.render(settings).values())
    for value in [*SECRETS.values(), "url-password-987654"]:
        assert value not in text
    assert "kind: Secret\n" not in text
    tracking = k8s.tracking(settings, k8s.K8sOptions())[0]
    volumes = tracking["spec"]["template"]["spec"]["volumes"]
    secret = next(v for v in volumes if "secret" in v)["secret"]
    assert secret["secretName"] == "mlops-platform"
    assert {i["key"] for i in secret["items"]} == set(k8s.SECRET_KEYS)
    env = k8s.config_env(settings, k8s.K8sOptions())
    assert env["MLOPS_SECRETS_DIR"] == k8s.SECRETS_MOUNT
    assert env["MLOPS_DB_HOST"] == "db.internal" and env["MLOPS_DB_PORT"] == "6432"
    assert "MLOPS_DB_URL" not in env


def test_tracking_deployment_is_production_shaped(settings: PlatformSettings) -> None:
    opts = k8s.K8sOptions(tracking_replicas=3)
    deployment, service, pdb, ingress = k8s.tracking(settings, opts)
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlops-platform", "serve"]
    assert container["readinessProbe"]["exec"]["command"] == ["mlops-platform", "health", "ready"]
    assert container["livenessProbe"]["exec"]["command"] == ["mlops-platform", "health", "live"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert ingress["spec"]["rules"][0]["host"] == "mlflow.corp.example"
    env = k8s.config_env(settings, opts)
    assert "mlflow-tracking.mlops.svc:5000" in env["MLOPS_ALLOWED_HOSTS"].split(",")
    assert env["MLOPS_DB_UPGRADE"] == "false"  # only the Job migrates


def test_migration_job_runs_before_the_rollout(settings: PlatformSettings) -> None:
    files = list(k8s.manifests(settings))
    assert files.index("20-migrate-job.yaml") < files.index("30-tracking.yaml")
    job = k8s.migrate_job(settings, k8s.K8sOptions())[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["mlops-platform", "db", "upgrade"]


def test_network_policy_opens_only_what_is_needed(settings: PlatformSettings) -> None:
    policy = k8s.tracking_network_policy(settings, k8s.K8sOptions())[0]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6432, 9000}
    sources = policy["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": k8s._selector("serving")}} in sources


def test_serving_has_probes_and_autoscaling(settings: PlatformSettings) -> None:
    opts = k8s.K8sOptions(model_name="iris", model_alias="champion", serving_max_replicas=7)
    deployment, service, ingress, hpa = k8s.serving(settings, opts)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_URI"] == "models:/iris@champion"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow-tracking.mlops.svc:5000"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert hpa["spec"]["maxReplicas"] == 7
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert ingress["spec"]["rules"][0]["host"] == "models.example.com"


def test_render_is_pure(settings: PlatformSettings) -> None:
    assert k8s.render(settings) == k8s.render(settings)
