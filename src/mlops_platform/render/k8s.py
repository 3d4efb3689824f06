"""Kubernetes manifests for the tracking server and model serving, from the settings.

Pure functions: settings + :class:`K8sOptions` -> ``{file name: [resource, ...]}``. The
files are numbered in the order to apply them (docs/kubernetes.md):

- ``00-namespace.yaml``
- ``10-config.yaml``: the ConfigMap of non-secret ``MLOPS_*`` settings, and the nginx
  ConfigMap (the kit's template and its proxy-secret entrypoint snippet). Secrets are
  never rendered: each container mounts only the keys it uses of an existing Secret
  (``kubectl create secret generic``) as files under ``/run/secrets/mlops``, which
  ``PlatformSettings`` reads before the environment, and names the others in
  ``MLOPS_SECRETS_NOT_NEEDED``.
- ``20-migrate-job.yaml``: ``mlops-platform db upgrade`` (tracking and auth databases) as
  a Job, annotated as a Helm pre-install/pre-upgrade hook and an Argo CD PreSync hook.
  ``mlops-platform serve`` refuses an out-of-date schema, so a rollout cannot get ahead
  of its migration.
- ``30-tracking.yaml``: Deployment whose pods run the kit's nginx (the same template as
  compose and the local stack: logins, lockout, the user and proxy secret forwarded) in
  front of the tracking server, which listens on the pod's loopback only; Service and
  PodDisruptionBudget on nginx's port, and a plain Ingress to the Service (no controller
  annotations: any Ingress controller or Gateway will do).
- ``31-tracking-networkpolicy.yaml``: ingress to nginx's port only, from the ingress
  controller's namespace, the serving pods and pods labelled ``mlops-platform/client``;
  egress to DNS, PostgreSQL and S3 only.
- ``40-serving.yaml``: model serving Deployment (its own account, from a Secret),
  Service, Ingress, HorizontalPodAutoscaler.
- ``50-backup.yaml``: a PersistentVolumeClaim for the backups and a CronJob running
  ``mlops-platform backup create`` then ``backup prune --yes`` (docs/backup.md); one run
  at a time, never overlapping. The tracking image must carry ``pg_dump``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from mlops_platform.render import nginx
from mlops_platform.render.serving import DEFAULT_PORT as SERVING_PORT
from mlops_platform.render.serving import model_uri
from mlops_platform.settings import SECRET_FIELDS, PlatformSettings

SECRETS_MOUNT = "/run/secrets/mlops"
# The keys of the Secret each container mounts, and nothing else. proxy_password (the
# admin's) is in none: it stays with whoever administers the password file.
TRACKING_SECRET_KEYS = (
    "db_password",
    "s3_access_key_id",
    "s3_secret_access_key",
    "flask_secret_key",
    "proxy_secret",
    "kek_passphrase",
)
MIGRATE_SECRET_KEYS = ("db_password",)
BACKUP_SECRET_KEYS = ("db_password", "s3_access_key_id", "s3_secret_access_key")
NGINX_SECRET_KEYS = ("proxy_secret",)
SECRET_KEYS = TRACKING_SECRET_KEYS  # every key the Secret must hold
HTPASSWD_KEY = "htpasswd"
# The kit's nginx in the tracking pod: the same image as docker-compose.yaml's.
NGINX_IMAGE = "nginx:1.28.0-alpine"
NGINX_PORT = 8080
SERVICE_PORT = 80
NGINX_USERS_DIR = "/etc/nginx/mlops"
NGINX_SNIPPETS_DIR = "/etc/nginx/mlops-snippets"
REAL_IP_SNIPPET = "real-ip.conf"
PROXY_SECRET_SNIPPET = "19-mlops-proxy-secret.envsh"
# Pods outside the serving Deployment that may call MLflow (through nginx) carry it.
CLIENT_LABEL = "mlops-platform/client"
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
    serving_secret: str = "mlops-serving-account"  # keys: username, password
    nginx_image: str = NGINX_IMAGE
    ingress_class: str | None = None  # None: the cluster's default IngressClass
    ingress_namespace: str = "ingress-nginx"  # where the controller's pods run
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
    nginx_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
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
    """An Ingress spec: TLS for ``host`` (secret ``<service>-tls``), all paths to ``service``.

    Plain: no controller-specific annotation (ingress-nginx reached its end of maintenance
    in 2026); logins and limits are the kit's nginx's business, behind the Service.
    """
    backend = {"service": {"name": service, "port": {"name": "http"}}}
    spec: dict[str, Any] = {}
    if opts.ingress_class:
        spec["ingressClassName"] = opts.ingress_class
    spec["tls"] = [{"hosts": [host], "secretName": f"{service}-tls"}]
    spec["rules"] = [
        {
            "host": host,
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
    ]
    return spec


def _meta(name: str, opts: K8sOptions, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": opts.namespace, "labels": _labels(component), **extra}


def tracking_service_host(opts: K8sOptions) -> str:
    return f"mlflow-tracking.{opts.namespace}.svc"


def tracking_service_url(opts: K8sOptions) -> str:
    """In-cluster URL of MLflow: the Service, i.e. the kit's nginx (a login is needed)."""
    return f"http://{tracking_service_host(opts)}"


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
        "MLOPS_SECRETS_NOT_NEEDED": _not_needed(TRACKING_SECRET_KEYS),
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
        # The pod's loopback: only the nginx beside it reaches the server.
        "MLOPS_SERVER_HOST": "127.0.0.1",
        "MLOPS_SERVER_PORT": str(settings.server_port),
        "MLOPS_SERVER_WORKERS": str(settings.server_workers),
        "MLOPS_SERVER_TCP_NODELAY": str(settings.server_tcp_nodelay).lower(),
        "MLOPS_PUBLIC_URL": f"https://{host}",
        "MLOPS_ALLOWED_HOSTS": ",".join(
            [
                host,
                "mlflow-tracking",
                tracking_service_host(opts),
                f"{tracking_service_host(opts)}.cluster.local",
                *extra_hosts,
            ]
        ),
        "MLOPS_ARTIFACT_MODE": settings.artifact_mode,
        # The nginx in the pod is the proxy: it logs people in and forwards who they are.
        "MLOPS_PROXY_ENABLED": "true",
        "MLOPS_PROXY_USER": settings.proxy_user,
        "MLOPS_AUTH_ENABLED": str(settings.auth_enabled).lower(),
        "MLOPS_AUTH_DB_NAME": settings.auth_db_name,
        "MLOPS_AUTH_DEFAULT_ROLE": settings.auth_default_role,
        "MLOPS_AUTH_MIGRATE_ROLE": settings.auth_migrate_role,
        "MLOPS_AUTH_VIEWERS_READ_ALL": str(settings.auth_viewers_read_all).lower(),
        "MLOPS_AUTH_PROTECTED_ALIASES": settings.auth_protected_aliases,
        "MLOPS_PROMETHEUS": str(settings.prometheus).lower(),
    }
    if settings.s3_endpoint_url:
        env["MLOPS_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


def _not_needed(keys: tuple[str, ...]) -> str:
    """MLOPS_SECRETS_NOT_NEEDED of a container given ``keys``: every other secret."""
    return ",".join(name for name in SECRET_FIELDS if name not in keys)


def _secret_volume(name: str, secret: str, keys: tuple[str, ...], mode: int) -> dict[str, Any]:
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "defaultMode": mode,
            "items": [{"key": k, "path": k} for k in keys],
        },
    }


def _tracking_pod_spec(
    settings: PlatformSettings,
    opts: K8sOptions,
    command: list[str],
    *,
    probes: bool,
    secret_keys: tuple[str, ...] = TRACKING_SECRET_KEYS,
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
    if secret_keys != TRACKING_SECRET_KEYS:
        container["env"] = [{"name": "MLOPS_SECRETS_NOT_NEEDED", "value": _not_needed(secret_keys)}]
    if probes:
        # The kit's own checks, inside the container (the server is on its loopback):
        # live = MLflow's /health, ready = that plus the database at head and the bucket.
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
            _secret_volume("secrets", opts.secret_name, secret_keys, 0o400),
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def nginx_env(settings: PlatformSettings) -> dict[str, str]:
    """The template's values in the tracking pod (the image's envsubst renders it).

    The proxy secret is not among them: the entrypoint snippet reads it from its file.
    """
    values = nginx.template_variables(
        settings,
        upstream=f"127.0.0.1:{settings.server_port}",
        # TLS ends at the Ingress; the only snippet is real-ip.conf (trusted proxies).
        snippets_dir=NGINX_SNIPPETS_DIR,
        access_log="/dev/stdout",
        auth_fail_socket_path="/tmp/mlops-auth-failures.sock",
        lockout_cache="/var/cache/nginx/mlops-lockout",
    )
    values.pop("MLOPS_PROXY_SECRET")
    values["MLOPS_PROXY_LISTEN"] = str(NGINX_PORT)
    values["MLOPS_USERS_FILE"] = f"{NGINX_USERS_DIR}/{HTPASSWD_KEY}"
    return {
        "NGINX_ENVSUBST_FILTER": "MLOPS_",
        "MLOPS_PROXY_SECRET_FILE": f"{SECRETS_MOUNT}/proxy_secret",
        **values,
    }


def nginx_config(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    """The kit's nginx template, the snippet that reads the proxy secret's file, and the
    trusted proxies' real_ip lines (MLOPS_PROXY_TRUSTED_PROXIES: the Ingress controller's
    pods, so that limits and the lockout see each client's address, not theirs)."""
    data = {
        nginx.TEMPLATE_NAME: nginx.template_text(),
        PROXY_SECRET_SNIPPET: proxy_secret_snippet(),
    }
    real_ip = nginx.real_ip_snippet(settings)
    if real_ip:
        data[REAL_IP_SNIPPET] = real_ip
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("mlops-nginx", opts, "tracking"),
            "data": data,
        }
    ]


def proxy_secret_snippet() -> str:
    """scripts/nginx-proxy-secret, as the compose nginx sources it."""
    from importlib import resources

    return (
        resources.files("mlops_platform").joinpath("templates", "nginx-proxy-secret.envsh")
    ).read_text()


def _nginx_container(settings: PlatformSettings, opts: K8sOptions) -> dict[str, Any]:
    def empty(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "mountPath": path}

    return {
        "name": "nginx",
        "image": opts.nginx_image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": k, "value": v} for k, v in nginx_env(settings).items()],
        "ports": [{"name": "http", "containerPort": NGINX_PORT}],
        # The proxy answers /health from MLflow's own (no login): ready when both are.
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": max(12, settings.db_wait_seconds // 5 + 24),
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
        # nginx itself, whatever MLflow does: a down server must not restart the proxy.
        "livenessProbe": {
            "httpGet": {"path": "/-/proxy-health", "port": "http"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "nginx-templates", "mountPath": "/etc/nginx/templates", "readOnly": True},
            {
                "name": "nginx-templates",
                "mountPath": f"/docker-entrypoint.d/{PROXY_SECRET_SNIPPET}",
                "subPath": PROXY_SECRET_SNIPPET,
                "readOnly": True,
            },
            {"name": "nginx-secrets", "mountPath": SECRETS_MOUNT, "readOnly": True},
            {"name": "nginx-users", "mountPath": NGINX_USERS_DIR, "readOnly": True},
            # What the image writes: the rendered conf.d (no default.conf then), caches,
            # the pid file, the failed-login socket.
            empty("nginx-conf", "/etc/nginx/conf.d"),
            empty("nginx-cache", "/var/cache/nginx"),
            empty("nginx-run", "/run"),
            empty("nginx-tmp", "/tmp"),
        ],
        "resources": opts.nginx_resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _with_nginx(settings: PlatformSettings, opts: K8sOptions, spec: dict[str, Any]) -> None:
    """The kit's nginx beside the tracking server, in the same pod (a sidecar)."""
    container = _nginx_container(settings, opts)
    spec["containers"].insert(0, container)
    if nginx.real_ip_snippet(settings):
        container["volumeMounts"].append(
            {"name": "nginx-snippets", "mountPath": NGINX_SNIPPETS_DIR, "readOnly": True}
        )
        spec["volumes"].append(
            {
                "name": "nginx-snippets",
                "configMap": {
                    "name": "mlops-nginx",
                    "defaultMode": 0o444,
                    "items": [{"key": REAL_IP_SNIPPET, "path": REAL_IP_SNIPPET}],
                },
            }
        )
    spec["volumes"] += [
        {
            "name": "nginx-templates",
            "configMap": {
                "name": "mlops-nginx",
                "defaultMode": 0o444,
                "items": [
                    {"key": nginx.TEMPLATE_NAME, "path": nginx.TEMPLATE_NAME},
                    {"key": PROXY_SECRET_SNIPPET, "path": PROXY_SECRET_SNIPPET, "mode": 0o555},
                ],
            },
        },
        _secret_volume("nginx-secrets", opts.secret_name, NGINX_SECRET_KEYS, 0o440),
        # Updated in place when the Secret changes (no subPath): `users add` takes effect
        # within a minute of `kubectl apply`, no restart (docs/kubernetes.md).
        _secret_volume("nginx-users", opts.htpasswd_secret, (HTPASSWD_KEY,), 0o440),
        {"name": "nginx-conf", "emptyDir": {}},
        {"name": "nginx-cache", "emptyDir": {}},
        {"name": "nginx-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "nginx-tmp", "emptyDir": {}},
    ]


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
        },
        *nginx_config(settings, opts),
    ]


def migrate_job(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    """`db upgrade`: the tracking schema and MLflow's auth store (its own database, which
    must exist or the role must be allowed to create it: docs/kubernetes.md)."""
    spec = _tracking_pod_spec(
        settings,
        opts,
        ["mlops-platform", "db", "upgrade", "--no-dump"],
        probes=False,
        secret_keys=MIGRATE_SECRET_KEYS,
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
    pod = _tracking_pod_spec(settings, opts, ["mlops-platform", "serve"], probes=True)
    _with_nginx(settings, opts, pod)
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
                "template": {"metadata": {"labels": _labels("tracking")}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
            "spec": {
                "selector": _selector("tracking"),
                # nginx's port: the server itself is on the pods' loopback.
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
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
            "metadata": _meta("mlflow-tracking", opts, "tracking"),
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
                # nginx's port only (the server listens on the pod's loopback anyway).
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
                            {
                                "namespaceSelector": {},
                                "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}},
                            },
                        ],
                        "ports": [{"protocol": "TCP", "port": NGINX_PORT}],
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
    def account(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": opts.serving_secret, "key": key}}

    container = {
        "name": "serving",
        "image": opts.serving_image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "MODEL_NAME", "value": opts.model_name},
            {"name": "MODEL_ALIAS", "value": opts.model_alias},
            {"name": "MODEL_URI", "value": model_uri(opts.model_name, opts.model_alias)},
            {"name": "PORT", "value": str(SERVING_PORT)},
            # Through the kit's nginx with its own account (role `service`, granted the
            # model), never the admin's.
            {"name": "MLFLOW_TRACKING_URI", "value": tracking_service_url(opts)},
            {"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": account("username")},
            {"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": account("password")},
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
    spec = _tracking_pod_spec(
        settings, opts, ["sh", "-c", script], probes=False, secret_keys=BACKUP_SECRET_KEYS
    )
    container = spec["containers"][0]
    container["name"] = "backup"
    container["env"] = [
        *container["env"],
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


def secret_commands(opts: K8sOptions) -> list[str]:
    """The Secrets the manifests reference, as the commands that create them."""
    ns = f"--namespace {opts.namespace}"
    keys = " ".join(f"--from-file={key}=..." for key in SECRET_KEYS)
    return [
        f"kubectl create secret generic {opts.secret_name} {ns} {keys}",
        f"kubectl create secret generic {opts.htpasswd_secret} {ns} "
        f"--from-file={HTPASSWD_KEY}=.mlops-platform/htpasswd",
        f"kubectl create secret generic {opts.serving_secret} {ns} "
        "--from-literal=username=svc-serving --from-file=password=...",
    ]


def to_yaml(resources: list[Manifest]) -> str:
    header = "# Rendered by `mlops-platform deploy render k8s`; edit the settings, not this file.\n"
    return header + yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False)


def render(settings: PlatformSettings, opts: K8sOptions | None = None) -> dict[str, str]:
    return {name: to_yaml(docs) for name, docs in manifests(settings, opts).items()}
