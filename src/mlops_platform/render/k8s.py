"""Kubernetes manifests for the tracking server and model serving, from the settings.

Pure functions: settings + :class:`K8sOptions` -> ``{file name: [resource, ...]}``. The
files are numbered in the order to apply them (docs/kubernetes.md):

- ``00-namespace.yaml``
- ``10-config.yaml``: the ConfigMap of non-secret ``MLOPS_*`` settings. Secrets are never
  rendered: the pods mount an existing Secret (``kubectl create secret generic``) as files
  under ``/run/secrets/mlops``, which ``PlatformSettings`` reads before the environment.
- ``20-migrate-job.yaml``: ``mlops-platform db upgrade`` as a Job, annotated as a Helm
  pre-install/pre-upgrade hook and an Argo CD PreSync hook. ``mlops-platform serve``
  refuses an out-of-date schema, so a rollout cannot get ahead of its migration.
- ``30-tracking.yaml``: Deployment (replicas, probes running the kit's health checks,
  requests and limits, non-root), Service, PodDisruptionBudget, and an Ingress with basic
  auth (the in-cluster counterpart of the nginx proxy).
- ``31-tracking-networkpolicy.yaml``: only the ingress controller and serving pods reach
  the tracking server; it reaches only DNS, PostgreSQL and S3.
- ``40-serving.yaml``: model serving Deployment, Service, Ingress, HorizontalPodAutoscaler.
- ``50-backup.yaml``: a PersistentVolumeClaim for the backups and a CronJob running
  ``mlops-platform backup create`` then ``backup prune --yes`` (docs/backup.md); one run
  at a time, never overlapping. The tracking image must carry ``pg_dump``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from mlops_platform.render.serving import DEFAULT_PORT as SERVING_PORT
from mlops_platform.render.serving import model_uri
from mlops_platform.settings import PlatformSettings

SECRETS_MOUNT = "/run/secrets/mlops"
SECRET_KEYS = ("db_password", "s3_access_key_id", "s3_secret_access_key", "flask_secret_key")
Manifest = dict[str, Any]


@dataclass(frozen=True)
class K8sOptions:
    namespace: str = "mlops"
    tracking_image: str = "ghcr.io/example/mlops-platform:0.1.0"
    serving_image: str = "ghcr.io/example/mlops-serving:0.1.0"
    tracking_replicas: int = 2
    tracking_host: str | None = None  # default: the host of settings.public_url
    secret_name: str = "mlops-platform"
    htpasswd_secret: str = "mlops-htpasswd"
    ingress_class: str = "nginx"
    ingress_namespace: str = "ingress-nginx"
    model_name: str = "model"
    model_alias: str = "champion"
    serving_host: str = "models.example.com"
    serving_min_replicas: int = 2
    serving_max_replicas: int = 10
    serving_cpu_target: int = 70
    backup_schedule: str = "30 2 * * *"  # nightly, 02:30 in the cluster's time zone
    backup_time_zone: str = "Etc/UTC"
    backup_storage: str = "100Gi"
    backup_storage_class: str | None = None  # the cluster default
    tracking_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        }
    )
    serving_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "mlops-platform",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "mlops-platform",
    }


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mlops-platform", "app.kubernetes.io/component": component}


def _ingress_spec(opts: K8sOptions, host: str, service: str) -> dict[str, Any]:
    """An Ingress spec: TLS for ``host`` (secret ``<service>-tls``), all paths to ``service``."""
    backend = {"service": {"name": service, "port": {"name": "http"}}}
    return {
        "ingressClassName": opts.ingress_class,
        "tls": [{"hosts": [host], "secretName": f"{service}-tls"}],
        "rules": [
            {
                "host": host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
        ],
    }


def _meta(name: str, opts: K8sOptions, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": opts.namespace, "labels": _labels(component), **extra}


def tracking_service_host(opts: K8sOptions) -> str:
    return f"mlflow-tracking.{opts.namespace}.svc"


def _tracking_host(settings: PlatformSettings, opts: K8sOptions) -> str:
    if opts.tracking_host:
        return opts.tracking_host
    return urlsplit(settings.resolved_public_url).hostname or "mlflow.example.com"


def config_env(settings: PlatformSettings, opts: K8sOptions) -> dict[str, str]:
    """Non-secret settings of the tracking pods (``MLOPS_*``); secrets come from files."""
    db = settings.db_parts()
    host = _tracking_host(settings, opts)
    extra_hosts = [h for h in settings.allowed_hosts.split(",") if h.strip()]
    env = {
        "MLOPS_ENV": settings.env,
        "MLOPS_STATE_DIR": "/tmp/mlops-platform",
        "MLOPS_SECRETS_DIR": SECRETS_MOUNT,
        "MLOPS_DB_HOST": str(db["host"]),
        "MLOPS_DB_PORT": str(db["port"]),
        "MLOPS_DB_NAME": str(db["name"]),
        "MLOPS_DB_USER": str(db["user"]),
        "MLOPS_DB_WAIT_SECONDS": str(settings.db_wait_seconds),
        "MLOPS_DB_UPGRADE": "false",
        "MLOPS_DB_APPLY_INDEXES": str(settings.db_apply_indexes).lower(),
        "MLOPS_OBJECT_STORE": "external",
        "MLOPS_S3_BUCKET": settings.s3_bucket,
        "MLOPS_S3_PREFIX": settings.s3_prefix,
        "MLOPS_S3_REGION": settings.s3_region,
        "MLOPS_S3_PATH_STYLE": str(settings.s3_path_style).lower(),
        "MLOPS_SERVER_HOST": "0.0.0.0",
        "MLOPS_SERVER_PORT": str(settings.server_port),
        "MLOPS_SERVER_WORKERS": str(settings.server_workers),
        "MLOPS_SERVER_TCP_NODELAY": str(settings.server_tcp_nodelay).lower(),
        "MLOPS_PUBLIC_URL": f"https://{host}",
        "MLOPS_ALLOWED_HOSTS": ",".join(
            [
                host,
                "mlflow-tracking",
                tracking_service_host(opts),
                f"{tracking_service_host(opts)}:{settings.server_port}",
                f"mlflow-tracking:{settings.server_port}",
                *extra_hosts,
            ]
        ),
        "MLOPS_ARTIFACT_MODE": settings.artifact_mode,
        "MLOPS_PROXY_ENABLED": "false",
        "MLOPS_PROMETHEUS": str(settings.prometheus).lower(),
    }
    if settings.s3_endpoint_url:
        env["MLOPS_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


def _tracking_pod_spec(
    settings: PlatformSettings, opts: K8sOptions, command: list[str], *, probes: bool
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "tracking" if probes else "migrate",
        "image": opts.tracking_image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "envFrom": [{"configMapRef": {"name": "mlops-platform-config"}}],
        "volumeMounts": [
            {"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": opts.tracking_resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if probes:
        container["ports"] = [{"name": "http", "containerPort": settings.server_port}]
        container["startupProbe"] = {
            "exec": {"command": ["mlops-platform", "health", "live"]},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": max(12, settings.db_wait_seconds // 5 + 12),
        }
        container["livenessProbe"] = {
            "exec": {"command": ["mlops-platform", "health", "live"]},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        }
        container["readinessProbe"] = {
            "exec": {"command": ["mlops-platform", "health", "ready"]},
            "periodSeconds": 15,
            "timeoutSeconds": 10,
            "failureThreshold": 2,
        }
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "secrets",
                "secret": {
                    "secretName": opts.secret_name,
                    "defaultMode": 0o400,
                    "items": [{"key": k, "path": k} for k in SECRET_KEYS],
                },
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def namespace(opts: K8sOptions) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": opts.namespace, "labels": _labels("namespace")},
        }
    ]


def config(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("mlops-platform-config", opts, "tracking"),
            "data": config_env(settings, opts),
        }
    ]


def migrate_job(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    spec = _tracking_pod_spec(
        settings, opts, ["mlops-platform", "db", "upgrade", "--no-dump"], probes=False
    )
    spec["restartPolicy"] = "Never"
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(
                "mlflow-db-migrate",
                opts,
                "migrate",
                annotations={
                    "helm.sh/hook": "pre-install,pre-upgrade",
                    "helm.sh/hook-delete-policy": "before-hook-creation",
                    "argocd.argoproj.io/hook": "PreSync",
                    "mlops-platform/note": "take a backup first: mlops-platform backup create",
                },
            ),
            "spec": {
                "backoffLimit": 1,
                "activeDeadlineSeconds": 1800,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": _labels("migrate")}, "spec": spec},
            },
        }
    ]


def tracking(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    host = _tracking_host(settings, opts)
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
            "spec": {
                "replicas": opts.tracking_replicas,
                "selector": {"matchLabels": _selector("tracking")},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": {
                    "metadata": {"labels": _labels("tracking")},
                    "spec": _tracking_pod_spec(
                        settings, opts, ["mlops-platform", "serve"], probes=True
                    ),
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
            "spec": {
                "selector": _selector("tracking"),
                "ports": [{"name": "http", "port": settings.server_port, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector("tracking")}},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": _meta(
                "mlflow-tracking",
                opts,
                "tracking",
                annotations={
                    "nginx.ingress.kubernetes.io/auth-type": "basic",
                    "nginx.ingress.kubernetes.io/auth-secret": opts.htpasswd_secret,
                    "nginx.ingress.kubernetes.io/auth-realm": "MLflow",
                    "nginx.ingress.kubernetes.io/proxy-body-size": settings.proxy_body_size,
                    "nginx.ingress.kubernetes.io/proxy-read-timeout": str(
                        settings.proxy_timeout_seconds
                    ),
                },
            ),
            "spec": _ingress_spec(opts, host, "mlflow-tracking"),
        },
    ]


def tracking_network_policy(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    db_port = int(settings.db_parts()["port"])
    s3_port = urlsplit(settings.s3_endpoint or "https://s3.amazonaws.com").port or 443
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
            "spec": {
                "podSelector": {"matchLabels": _selector("tracking")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {
                                        "kubernetes.io/metadata.name": opts.ingress_namespace
                                    }
                                }
                            },
                            {"podSelector": {"matchLabels": _selector("serving")}},
                        ],
                        "ports": [{"protocol": "TCP", "port": settings.server_port}],
                    }
                ],
                "egress": [
                    {
                        "ports": [
                            {"protocol": "UDP", "port": 53},
                            {"protocol": "TCP", "port": 53},
                        ]
                    },
                    {
                        "ports": [
                            {"protocol": "TCP", "port": db_port},
                            {"protocol": "TCP", "port": s3_port},
                        ]
                    },
                ],
            },
        }
    ]


def serving(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    tracking_uri = f"http://{tracking_service_host(opts)}:{settings.server_port}"
    container = {
        "name": "serving",
        "image": opts.serving_image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "MODEL_NAME", "value": opts.model_name},
            {"name": "MODEL_ALIAS", "value": opts.model_alias},
            {"name": "MODEL_URI", "value": model_uri(opts.model_name, opts.model_alias)},
            {"name": "PORT", "value": str(SERVING_PORT)},
            {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
        ],
        "ports": [{"name": "http", "containerPort": SERVING_PORT}],
        "startupProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": opts.serving_resources,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("model-serving", opts, "serving"),
            "spec": {
                "replicas": opts.serving_min_replicas,
                "selector": {"matchLabels": _selector("serving")},
                "template": {
                    "metadata": {"labels": _labels("serving")},
                    "spec": {
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("model-serving", opts, "serving"),
            "spec": {
                "selector": _selector("serving"),
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": _meta("model-serving", opts, "serving"),
            "spec": _ingress_spec(opts, opts.serving_host, "model-serving"),
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta("model-serving", opts, "serving"),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "model-serving",
                },
                "minReplicas": opts.serving_min_replicas,
                "maxReplicas": opts.serving_max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": opts.serving_cpu_target,
                            },
                        },
                    }
                ],
            },
        },
    ]


BACKUP_MOUNT = "/backups"


def backup_cronjob(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    """Nightly ``backup create`` + ``backup prune`` into a PersistentVolumeClaim."""
    script = (
        "mlops-platform backup create && "
        f"mlops-platform backup prune --keep {settings.backup_keep} --yes"
    )
    spec = _tracking_pod_spec(settings, opts, ["sh", "-c", script], probes=False)
    container = spec["containers"][0]
    container["name"] = "backup"
    container["env"] = [
        {"name": "MLOPS_BACKUP_DIR", "value": BACKUP_MOUNT},
        {"name": "MLOPS_BACKUP_WORKERS", "value": str(settings.backup_workers)},
    ]
    container["volumeMounts"].append({"name": "backups", "mountPath": BACKUP_MOUNT})
    spec["volumes"].append(
        {"name": "backups", "persistentVolumeClaim": {"claimName": "mlops-backups"}}
    )
    spec["restartPolicy"] = "Never"
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": opts.backup_storage}},
    }
    if opts.backup_storage_class:
        claim["storageClassName"] = opts.backup_storage_class
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("mlops-backups", opts, "backup"),
            "spec": claim,
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta("mlops-backup", opts, "backup"),
            "spec": {
                "schedule": opts.backup_schedule,
                "timeZone": opts.backup_time_zone,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 5,
                "jobTemplate": {
                    "metadata": {"labels": _labels("backup")},
                    "spec": {
                        "backoffLimit": 1,
                        "activeDeadlineSeconds": 6 * 3600,
                        "template": {"metadata": {"labels": _labels("backup")}, "spec": spec},
                    },
                },
            },
        },
    ]


def manifests(
    settings: PlatformSettings, opts: K8sOptions | None = None
) -> dict[str, list[Manifest]]:
    """Every manifest file, by name, in the order to apply them."""
    opts = opts or K8sOptions()
    return {
        "00-namespace.yaml": namespace(opts),
        "10-config.yaml": config(settings, opts),
        "20-migrate-job.yaml": migrate_job(settings, opts),
        "30-tracking.yaml": tracking(settings, opts),
        "31-tracking-networkpolicy.yaml": tracking_network_policy(settings, opts),
        "40-serving.yaml": serving(settings, opts),
        "50-backup.yaml": backup_cronjob(settings, opts),
    }


def to_yaml(resources: list[Manifest]) -> str:
    header = "# Rendered by `mlops-platform deploy render k8s`; edit the settings, not this file.\n"
    return header + yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False)


def render(settings: PlatformSettings, opts: K8sOptions | None = None) -> dict[str, str]:
    return {name: to_yaml(docs) for name, docs in manifests(settings, opts).items()}
