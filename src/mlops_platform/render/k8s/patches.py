"""The overlay's patches: replicas, resources, Secret items, CronJobs, NetworkPolicies,
serving, the routes and the ServiceAccounts, each a strategic-merge patch of the base."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mlops_platform.render.k8s.options import (
    BACKUP_SECRET_KEYS,
    CHECKSUM_ANNOTATION,
    CLIENT_LABEL,
    GC_SECRET_KEYS,
    MIGRATE_JOB,
    MIGRATE_SECRET_KEYS,
    NGINX_PORT,
    PRESTOP_SECONDS,
    SECRET_NAME,
    TRACKING_SECRET_KEYS,
    K8sOptions,
    Manifest,
)
from mlops_platform.render.k8s.values import not_needed, secret_keys, tracking_host
from mlops_platform.render.serving import model_uri
from mlops_platform.settings import PlatformSettings


def overlay_patches(settings: PlatformSettings, opts: K8sOptions, sum_: str) -> dict[str, Manifest]:
    """Every patch of the overlay by its path; ``sum_`` is the config checksum."""
    out: dict[str, Manifest] = {
        "patches/tracking.yaml": _tracking_patch(settings, opts, sum_),
        "patches/backup.yaml": _cronjob_patch(
            settings,
            "mlops-backup",
            "backup",
            schedule=opts.backup_schedule,
            timeZone=opts.backup_time_zone,
        ),
        "patches/backup-verify.yaml": _cronjob_patch(
            settings, "mlops-backup-verify", "backup-verify", timeZone=opts.backup_time_zone
        ),
        "patches/gc.yaml": _cronjob_patch(
            settings, "mlops-gc", "gc", timeZone=opts.backup_time_zone
        ),
        "patches/job-migrate.yaml": _migrate_patch(settings),
    }
    for doc in [
        *_network_patches(settings, opts),
        *_serving_patches(opts, sum_),
        *_route_patches(settings, opts),
        *_service_account_patches(opts),
    ]:
        kind = doc["kind"].lower()
        out[f"patches/{kind}-{doc['metadata']['name']}.yaml"] = doc
    return out


def _secret_volume(
    settings: PlatformSettings, keys: tuple[str, ...], name: str = "secrets"
) -> Manifest:
    """A volume of the kit's Secret holding those of KEYS the settings use, one file each."""
    items = [{"key": k, "path": k} for k in secret_keys(settings, keys)]
    return {"name": name, "secret": {"secretName": SECRET_NAME, "items": items}}


def _tracking_patch(settings: PlatformSettings, opts: K8sOptions, sum_: str) -> Manifest:
    grace = settings.proxy_timeout_seconds + PRESTOP_SECONDS + 20
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mlflow-tracking"},
        "spec": {
            "replicas": opts.tracking_replicas,
            "template": {
                "metadata": {"annotations": {CHECKSUM_ANNOTATION: sum_}},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [
                        {
                            "name": "tracking",
                            # Memory: the limit is the request (no overcommit of
                            # the node); CPU: no limit, so workers may burst.
                            "resources": {
                                "requests": {
                                    "cpu": opts.tracking_cpu,
                                    "memory": opts.tracking_memory,
                                },
                                "limits": {"cpu": None, "memory": opts.tracking_memory},
                            },
                        }
                    ],
                    "volumes": [
                        _secret_volume(settings, TRACKING_SECRET_KEYS),
                        _secret_volume(settings, MIGRATE_SECRET_KEYS, "db-secret"),
                        {"name": "tmp", "emptyDir": {"sizeLimit": opts.tracking_tmp_size}},
                    ],
                },
            },
        },
    }


def _cronjob_patch(settings: PlatformSettings, name: str, container: str, **spec: Any) -> Manifest:
    keys = BACKUP_SECRET_KEYS if container != "gc" else GC_SECRET_KEYS
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": container,
                                    "env": [
                                        {
                                            "name": "MLOPS_SECRETS_NOT_NEEDED",
                                            "value": not_needed(secret_keys(settings, keys)),
                                        }
                                    ],
                                }
                            ],
                            "volumes": [_secret_volume(settings, keys)],
                        }
                    }
                }
            },
        },
    }


def _migrate_patch(settings: PlatformSettings) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": MIGRATE_JOB},
        "spec": {
            "template": {"spec": {"volumes": [_secret_volume(settings, MIGRATE_SECRET_KEYS)]}}
        },
    }


def _egress_ports(settings: PlatformSettings) -> list[dict[str, Any]]:
    """PostgreSQL's port and the effective object store's (443 for AWS or https)."""
    db_port = int(settings.db_parts()["port"])
    endpoint = settings.s3_endpoint
    if endpoint:
        parts = urlsplit(endpoint)
        s3_port = parts.port or (443 if parts.scheme == "https" else 80)
    else:
        s3_port = 443
    ports = sorted({db_port, s3_port})
    return [{"protocol": "TCP", "port": p} for p in ports]


DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _selector(component: str) -> dict[str, Any]:
    return {
        "matchLabels": {
            "app.kubernetes.io/name": "mlops-platform",
            "app.kubernetes.io/component": component,
        }
    }


def ingress_peers(opts: K8sOptions) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in opts.ingress_namespaces
    ]
    peers += [{"ipBlock": {"cidr": cidr}} for cidr in opts.ingress_cidrs]
    peers += [
        {"podSelector": _selector("serving")},
        {"podSelector": _selector("jobs")},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}},
    ]
    return peers


def _network_patches(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    """Replaces (``$patch: replace``) the peers and ports of the base's policies."""
    ports = _egress_ports(settings)
    tracking = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "mlflow-tracking"},
        "spec": {
            "$patch": "replace",
            "podSelector": _selector("tracking"),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": ingress_peers(opts),
                    "ports": [{"protocol": "TCP", "port": NGINX_PORT}],
                }
            ],
            "egress": [DNS, {"ports": ports}],
        },
    }
    jobs = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "mlops-jobs"},
        "spec": {
            "$patch": "replace",
            "podSelector": {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": ["migrate", "jobs"],
                    }
                ]
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                DNS,
                {"ports": ports},
                {
                    "to": [{"podSelector": _selector("tracking")}],
                    "ports": [{"protocol": "TCP", "port": NGINX_PORT}],
                },
            ],
        },
    }
    return [tracking, jobs]


def _serving_patches(opts: K8sOptions, sum_: str) -> list[Manifest]:
    env = [
        {"name": "MODEL_NAME", "value": opts.model_name},
        {"name": "MODEL_ALIAS", "value": opts.model_alias},
        {"name": "MODEL_URI", "value": model_uri(opts.model_name, opts.model_alias)},
    ]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "model-serving"},
            "spec": {
                "template": {
                    "metadata": {"annotations": {CHECKSUM_ANNOTATION: sum_}},
                    "spec": {"containers": [{"name": "serving", "env": env}]},
                }
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "model-serving"},
            "spec": {
                "minReplicas": opts.serving_min_replicas,
                "maxReplicas": max(opts.serving_max_replicas, opts.serving_min_replicas),
            },
        },
    ]


def _route_patches(settings: PlatformSettings, opts: K8sOptions) -> list[Manifest]:
    host = tracking_host(settings, opts)
    spec: dict[str, Any] = {
        "tls": [{"hosts": [host], "secretName": "mlflow-tracking-tls"}],
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": "mlflow-tracking", "port": {"name": "http"}}
                            },
                        }
                    ]
                },
            }
        ],
    }
    if opts.ingress_class:
        spec["ingressClassName"] = opts.ingress_class
    out: list[Manifest] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "mlflow-tracking"},
            "spec": spec,
        }
    ]
    if opts.gateway:
        namespace, _, name = opts.gateway.rpartition("/")
        parent: dict[str, str] = {"name": name}
        if namespace:
            parent["namespace"] = namespace
        timeout = settings.proxy_timeout_seconds + PRESTOP_SECONDS + 20
        out.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "mlflow-tracking"},
                "spec": {
                    "parentRefs": [parent],
                    "hostnames": [host],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [{"name": "mlflow-tracking", "port": 80}],
                            "timeouts": {"request": f"{timeout}s"},
                        }
                    ],
                },
            }
        )
    return out


def _service_account_patches(opts: K8sOptions) -> list[Manifest]:
    if not opts.service_account_annotations:
        return []
    annotations = dict(opts.service_account_annotations)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "annotations": annotations},
        }
        for name in ("mlflow-tracking", "mlops-jobs")
    ]
