"""Kubernetes manifests: valid against the 1.37 schemas (offline), no secret inlined."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_platform.render import k8s, nginx
from mlops_platform.settings import SECRET_FIELDS, PlatformSettings
from tests.conftest import clear_mlops_env

ROOT = Path(__file__).resolve().parents[2]
SECRETS: dict[str, Any] = {
    "db_password": "db-secret-value-1234",
    "s3_access_key_id": "MLOPSKEYID12345",
    "s3_secret_access_key": "s3-secret-value-1234",
    "flask_secret_key": "flask-secret-value-1234",
    "proxy_password": "proxy-secret-value-1234",
    "proxy_secret": "proxy-shared-secret-value-0123456789abcdef",
    "kek_passphrase": "kek-passphrase-value-0123456789",
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
            "ConfigMap/mlops-nginx",
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
    secret = next(v for v in volumes if v["name"] == "secrets")["secret"]
    assert secret["secretName"] == "mlops-platform"
    assert {i["key"] for i in secret["items"]} == set(k8s.SECRET_KEYS)
    env = k8s.config_env(settings, k8s.K8sOptions())
    assert env["MLOPS_SECRETS_DIR"] == k8s.SECRETS_MOUNT
    assert env["MLOPS_DB_HOST"] == "db.internal" and env["MLOPS_DB_PORT"] == "6432"
    assert "MLOPS_DB_URL" not in env


def _containers(deployment: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_tracking_deployment_is_production_shaped(settings: PlatformSettings) -> None:
    opts = k8s.K8sOptions(tracking_replicas=3)
    deployment, service, pdb, ingress = k8s.tracking(settings, opts)
    assert deployment["spec"]["replicas"] == 3
    container = _containers(deployment)["tracking"]
    assert container["command"] == ["mlops-platform", "serve"]
    assert container["readinessProbe"]["exec"]["command"] == ["mlops-platform", "health", "ready"]
    assert container["livenessProbe"]["exec"]["command"] == ["mlops-platform", "health", "live"]
    for c in _containers(deployment).values():
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["name"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert ingress["spec"]["rules"][0]["host"] == "mlflow.corp.example"
    env = k8s.config_env(settings, opts)
    assert "mlflow-tracking.mlops.svc" in env["MLOPS_ALLOWED_HOSTS"].split(",")
    assert env["MLOPS_DB_UPGRADE"] == "false"  # only the Job migrates


def test_the_kit_nginx_is_a_sidecar_in_front_of_mlflow_on_loopback(
    settings: PlatformSettings,
) -> None:
    """One pod: nginx (the Service's port) and MLflow bound to the pod's loopback."""
    opts = k8s.K8sOptions()
    deployment, service, _, ingress = k8s.tracking(settings, opts)
    containers = _containers(deployment)
    assert set(containers) == {"nginx", "tracking"}
    proxy, server = containers["nginx"], containers["tracking"]
    env = k8s.config_env(settings, opts)
    assert env["MLOPS_SERVER_HOST"] == "127.0.0.1"
    assert env["MLOPS_PROXY_ENABLED"] == "true" and env["MLOPS_AUTH_ENABLED"] == "true"
    assert env["MLOPS_AUTH_DB_NAME"] == settings.auth_db_name
    # Only nginx has a port: the Service and the Ingress reach nothing else.
    assert "ports" not in server
    assert proxy["ports"] == [{"name": "http", "containerPort": k8s.NGINX_PORT}]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    # The same image as compose, the same template, rendered by the image's envsubst.
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert proxy["image"] == compose["services"]["nginx"]["image"] == k8s.NGINX_IMAGE
    proxy_env = {e["name"]: e["value"] for e in proxy["env"]}
    assert proxy_env["MLOPS_UPSTREAM"] == f"127.0.0.1:{settings.server_port}"
    assert proxy_env["MLOPS_PROXY_LISTEN"] == str(k8s.NGINX_PORT)
    config = k8s.nginx_config(settings, opts)[0]["data"]
    assert config[nginx.TEMPLATE_NAME] == nginx.template_text()
    snippet = (ROOT / "scripts" / "nginx-proxy-secret").read_text()
    assert config[k8s.PROXY_SECRET_SNIPPET] == snippet
    needed = set(re.findall(r"\$\{(MLOPS_[A-Z0-9_]+)\}", nginx.template_text()))
    assert needed - set(proxy_env) == {"MLOPS_PROXY_SECRET"}  # from its file, not env
    mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
    assert mounts["/docker-entrypoint.d/19-mlops-proxy-secret.envsh"]["subPath"] == (
        k8s.PROXY_SECRET_SNIPPET
    )
    assert proxy_env["MLOPS_PROXY_SECRET_FILE"] == f"{k8s.SECRETS_MOUNT}/proxy_secret"
    assert proxy_env["MLOPS_USERS_FILE"].startswith(mounts[k8s.NGINX_USERS_DIR]["mountPath"])
    # Probes: nginx's /health (MLflow's, through the proxy, no login).
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert proxy["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/-/proxy-health"


def test_the_template_renders_with_the_sidecar_values(settings: PlatformSettings) -> None:
    proxy_env = k8s.nginx_env(settings)
    text = nginx.substitute(
        nginx.template_text(), {**proxy_env, "MLOPS_PROXY_SECRET": SECRETS["proxy_secret"]}
    )
    assert not re.search(r"\$\{MLOPS_[A-Z0-9_]+\}", text)
    assert f"server 127.0.0.1:{settings.server_port};" in text
    assert f"listen {k8s.NGINX_PORT};" in text
    assert f'X-Mlops-Proxy-Secret "{SECRETS["proxy_secret"]}"' in text


def test_each_container_mounts_only_the_secrets_it_uses(settings: PlatformSettings) -> None:
    opts = k8s.K8sOptions()
    docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in _all(k8s.render(settings, opts))}

    def pod(name: str) -> dict:  # type: ignore[type-arg]
        doc = docs[name]
        if doc["kind"] == "CronJob":
            return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
        return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    def keys(spec: dict, container: dict) -> set[str]:  # type: ignore[type-arg]
        volumes = {v["name"]: v for v in spec["volumes"]}
        out: set[str] = set()
        for mount in container["volumeMounts"]:
            secret = volumes[mount["name"]].get("secret")
            if secret:
                out |= {f"{secret['secretName']}:{i['key']}" for i in secret["items"]}
        return out

    expected = {
        ("Deployment/mlflow-tracking", "tracking"): set(k8s.TRACKING_SECRET_KEYS),
        ("Deployment/mlflow-tracking", "nginx"): {"proxy_secret"},
        ("Job/mlflow-db-migrate", "migrate"): {"db_password"},
        ("CronJob/mlops-backup", "backup"): {
            "db_password",
            "s3_access_key_id",
            "s3_secret_access_key",
        },
    }
    for (doc, name), want in expected.items():
        spec = pod(doc)
        container = next(c for c in spec["containers"] if c["name"] == name)
        got = keys(spec, container)
        platform = {k.split(":", 1)[1] for k in got if k.startswith(f"{opts.secret_name}:")}
        assert platform == want, (doc, name)
        assert "proxy_password" not in platform
        if name == "nginx":
            assert got - {f"{opts.secret_name}:proxy_secret"} == {
                f"{opts.htpasswd_secret}:{k8s.HTPASSWD_KEY}"
            }
            continue
        # The kit's containers name the secrets they are not given, and only those.
        env = {**k8s.config_env(settings, opts)}
        env.update({e["name"]: e.get("value") for e in container.get("env", [])})
        not_needed = {n for n in env["MLOPS_SECRETS_NOT_NEEDED"].split(",") if n}
        assert not_needed == set(SECRET_FIELDS) - want, (doc, name)
    serving = pod("Deployment/model-serving")["containers"][0]
    refs = {e["name"]: e.get("valueFrom") for e in serving["env"]}
    assert refs["MLFLOW_TRACKING_PASSWORD"] == {
        "secretKeyRef": {"name": opts.serving_secret, "key": "password"}
    }


def test_the_sidecar_nginx_starts_from_its_secret_file(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    """The pod's entrypoint snippet reads the mounted secret for the template step."""
    secret = tmp_path / "proxy_secret"
    secret.write_text(SECRETS["proxy_secret"] + "\n")
    env = {**k8s.nginx_env(settings), "MLOPS_PROXY_SECRET_FILE": str(secret)}
    result = subprocess.run(
        [
            "sh",
            "-c",
            f'. "{ROOT / "scripts" / "nginx-proxy-secret"}" && echo "$MLOPS_PROXY_SECRET"',
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == SECRETS["proxy_secret"]


def test_no_ingress_nginx_auth_annotations(settings: PlatformSettings) -> None:
    """Logins are the kit's nginx's; the Ingress is plain and any controller will do."""
    text = "".join(k8s.render(settings).values())
    assert "nginx.ingress.kubernetes.io" not in text
    for doc in _all(k8s.render(settings)):
        if doc["kind"] == "Ingress":
            assert not doc["metadata"].get("annotations"), doc["metadata"]["name"]
            assert "ingressClassName" not in doc["spec"]  # the cluster's default
    opts = k8s.K8sOptions(ingress_class="traefik")
    assert k8s.tracking(settings, opts)[3]["spec"]["ingressClassName"] == "traefik"


def test_migration_job_runs_before_the_rollout(settings: PlatformSettings) -> None:
    files = list(k8s.manifests(settings))
    assert files.index("20-migrate-job.yaml") < files.index("30-tracking.yaml")
    job = k8s.migrate_job(settings, k8s.K8sOptions())[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["mlops-platform", "db", "upgrade"]
    # ...with the identity settings, so that it migrates MLflow's auth store too.
    env = k8s.config_env(settings, k8s.K8sOptions())
    assert env["MLOPS_AUTH_ENABLED"] == "true" and env["MLOPS_PROXY_ENABLED"] == "true"


def test_network_policy_opens_only_what_is_needed(settings: PlatformSettings) -> None:
    policy = k8s.tracking_network_policy(settings, k8s.K8sOptions())[0]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == k8s._selector("tracking")
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6432, 9000}
    # Ingress to nginx's port only, never the server's.
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": k8s.NGINX_PORT}]
    assert settings.server_port != k8s.NGINX_PORT
    sources = rule["from"]
    assert {"podSelector": {"matchLabels": k8s._selector("serving")}} in sources
    label = {"namespaceSelector": {}, "podSelector": {"matchLabels": {k8s.CLIENT_LABEL: "true"}}}
    assert label in sources


def test_serving_has_probes_and_autoscaling(settings: PlatformSettings) -> None:
    opts = k8s.K8sOptions(model_name="iris", model_alias="champion", serving_max_replicas=7)
    deployment, service, ingress, hpa = k8s.serving(settings, opts)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_URI"] == "models:/iris@champion"
    # Through the Service, i.e. the kit's nginx, with the serving account's login.
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow-tracking.mlops.svc"
    assert "MLFLOW_TRACKING_USERNAME" in env
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert hpa["spec"]["maxReplicas"] == 7
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert ingress["spec"]["rules"][0]["host"] == "models.example.com"


def test_render_is_pure(settings: PlatformSettings) -> None:
    assert k8s.render(settings) == k8s.render(settings)


def test_deploy_render_k8s_writes_the_files_and_names_every_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "deploy", "render", "k8s", "--out", "k8s"],
        capture_output=True,
        text=True,
        env={**env, "MLOPS_SECRETS_DIR": str(tmp_path / "none")},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "k8s").iterdir()) == sorted(
        k8s.manifests(PlatformSettings(_env_file=None))  # type: ignore[call-arg]
    )
    out = " ".join(result.stdout.split())
    for key in k8s.SECRET_KEYS:
        assert f"--from-file={key}=" in out
    assert "--from-file=proxy_password" not in out
    assert "mlops-htpasswd" in out and "mlops-serving-account" in out


def test_nginx_accepts_the_sidecar_rendering(settings: PlatformSettings, tmp_path: Path) -> None:
    """nginx -t on the pod's rendering: no snippets folder (TLS ends at the Ingress).

    The writable paths of the image (cache, socket, password file) move under tmp_path;
    everything else is the sidecar's environment.
    """
    import shutil

    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        pytest.fail("nginx is not installed: make system-deps", pytrace=False)
    for sub in ("conf.d", "logs", "tmp"):
        (tmp_path / sub).mkdir()
    env = k8s.nginx_env(settings)
    assert not Path(env["MLOPS_NGINX_SNIPPETS"]).exists()
    env.update(
        MLOPS_LOCKOUT_CACHE=str(tmp_path / "tmp" / "lockout"),
        MLOPS_AUTH_FAIL_SOCKET=str(tmp_path / "tmp" / "auth.sock"),
        MLOPS_USERS_FILE=str(tmp_path / "htpasswd"),
        MLOPS_ACCESS_LOG=str(tmp_path / "logs" / "access.log"),
        MLOPS_PROXY_SECRET=SECRETS["proxy_secret"],
    )
    values = {k: v for k, v in env.items() if k.startswith("MLOPS_")}
    values.pop("MLOPS_PROXY_SECRET_FILE")
    (tmp_path / "conf.d" / "mlflow.conf").write_text(
        nginx.substitute(nginx.template_text(), values)
    )
    (tmp_path / "nginx.conf").write_text(nginx.main_conf(tmp_path, run_as=None))
    result = subprocess.run(
        [
            binary,
            "-t",
            "-q",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "logs" / "error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_trusted_proxies_reach_the_sidecar_as_its_real_ip_snippet(
    settings: PlatformSettings,
) -> None:
    """Behind an Ingress every client arrives from the controller's pods: nginx must
    believe their X-Forwarded-For, and only theirs, for limits and the lockout."""
    opts = k8s.K8sOptions()
    plain = _containers(k8s.tracking(settings, opts)[0])["nginx"]
    assert k8s.NGINX_SNIPPETS_DIR not in {m["mountPath"] for m in plain["volumeMounts"]}
    assert k8s.REAL_IP_SNIPPET not in k8s.nginx_config(settings, opts)[0]["data"]
    trusting = settings.model_copy(update={"proxy_trusted_proxies": "10.42.0.0/16"})
    config = k8s.nginx_config(trusting, opts)[0]["data"]
    assert "set_real_ip_from 10.42.0.0/16;" in config[k8s.REAL_IP_SNIPPET]
    deployment = k8s.tracking(trusting, opts)[0]
    proxy = _containers(deployment)["nginx"]
    mount = next(m for m in proxy["volumeMounts"] if m["mountPath"] == k8s.NGINX_SNIPPETS_DIR)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["items"] == [
        {"key": k8s.REAL_IP_SNIPPET, "path": k8s.REAL_IP_SNIPPET}
    ]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert env["MLOPS_NGINX_SNIPPETS"] == k8s.NGINX_SNIPPETS_DIR  # the template includes it
    kv = _validator()
    for doc in _all(k8s.render(trusting, opts)):
        assert kv.validate(doc, K8S_VERSION, strict=True) == "1.37"
