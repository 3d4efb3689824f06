"""A Kustomize overlay of values for the kit's Kubernetes base, from the settings.

The manifests themselves are plain YAML under ``deploy/kubernetes/`` (``base/``,
``components/``, ``overlays/dev|production``, ``storage/``), reviewed like code. This
module renders only what differs per install, as an overlay on top of that base
(docs/kubernetes.md):

- ``kustomization.yaml``: the namespace, the base and the components this install needs
  (``pdb`` with two replicas or more, ``gateway-api`` with a Gateway, ``service-monitor``
  with Prometheus), the images, the ConfigMap generators and the patches;
- ``config.env``: every non-secret setting of the tracking pods (``MLOPS_DB_URL`` with its
  query, without a password); secrets stay in the Secret ``mlops-platform``, mounted as
  files;
- ``nginx.env``: the values of the kit's nginx template in the sidecar;
- ``real-ip.conf`` when ``MLOPS_PROXY_TRUSTED_PROXIES`` is set;
- ``patches/*.yaml``: replicas, resources and workers, the config checksum, the grace
  period from the proxy timeout, the NetworkPolicies' peers and ports, the hosts, the
  ServiceAccounts' annotations (cloud identity), the migrate Job's versioned name.

Pure: settings + :class:`K8sOptions` -> ``{relative path: text}``. Settings that only
make sense on one host (a loopback database, the local SeaweedFS, a ``localhost``
public URL) are refused with the variable to set.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import yaml
from pydantic import SecretStr

from mlops_platform.errors import ConfigError
from mlops_platform.render import nginx
from mlops_platform.render.serving import model_uri
from mlops_platform.settings import (
    ENV_PREFIX,
    RESERVED_CONNECTIONS,
    SECRET_FIELDS,
    PlatformSettings,
)

SECRETS_MOUNT = "/run/secrets/mlops"
SECRET_NAME = "mlops-platform"
HTPASSWD_SECRET = "mlops-htpasswd"
HTPASSWD_KEY = "htpasswd"
SERVING_SECRET = "mlops-serving-account"  # keys: username, password
GC_SECRET = "mlops-gc-account"
MONITORING_SECRET = "mlops-monitoring-account"
# The keys of the Secret each container mounts, and nothing else. proxy_password (the
# admin's) is in none: it stays with whoever administers the password file.
S3_KEYS = ("s3_access_key_id", "s3_secret_access_key")
TRACKING_SECRET_KEYS = (
    "db_password",
    *S3_KEYS,
    "flask_secret_key",
    "proxy_secret",
    "kek_passphrase",
)
MIGRATE_SECRET_KEYS = ("db_password",)
BACKUP_SECRET_KEYS = ("db_password", *S3_KEYS, "kek_passphrase")
GC_SECRET_KEYS = ("db_password", *S3_KEYS)
NGINX_SECRET_KEYS = ("proxy_secret",)
# The kit's nginx in the tracking pod: the same image as docker-compose.yaml's.
NGINX_IMAGE = "nginx:1.30.3-alpine"
NGINX_PORT = 8080
NGINX_USERS_DIR = "/etc/nginx/mlops"
NGINX_SNIPPETS_DIR = "/etc/nginx/mlops-snippets"
REAL_IP_SNIPPET = "real-ip.conf"
PROXY_SECRET_SNIPPET = "19-mlops-proxy-secret.envsh"
# Pods outside the kit that may call MLflow (through nginx) or serving carry it.
CLIENT_LABEL = "mlops-platform/client"
CHECKSUM_ANNOTATION = "mlops-platform/config-checksum"
# Seconds between leaving the Service's endpoints and nginx's graceful quit (base).
PRESTOP_SECONDS = 10
MIGRATE_JOB = "mlflow-db-migrate"
# Connections outside the servers' pools: the migrate Job, a backup, gc, a probe's CLI.
JOB_CONNECTIONS = 4
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
# Settings the pods do not get, and why: each is either replaced by the pod's own value
# (state, secrets, the listen address), or a tool of the local stack.
NOT_CARRIED = {
    "state_dir": "the pod's /tmp/mlops-platform",
    "secrets_dir": "the Secret's mount, /run/secrets/mlops",
    "db_host": "in MLOPS_DB_URL",
    "db_port": "in MLOPS_DB_URL",
    "db_name": "in MLOPS_DB_URL",
    "db_user": "in MLOPS_DB_URL",
    "db_os_user": "the local stack's PostgreSQL",
    "postgres_bin_dir": "the image's PostgreSQL client",
    "db_dump_dir": "set by the migrate Job (the backups claim)",
    "backup_dir": "set by the backup CronJobs (the backups claim)",
    "s3_port": "the local stack's SeaweedFS",
    "proxy_host": "nginx listens on the pod's port 8080",
    "proxy_port": "nginx listens on the pod's port 8080",
    "proxy_users_file": "the Secret mlops-htpasswd",
    "proxy_tls_cert_file": "TLS ends at the Ingress or Gateway",
    "proxy_tls_key_file": "TLS ends at the Ingress or Gateway",
    "proxy_plain_port": "TLS ends at the Ingress or Gateway",
    "nginx_bin": "the sidecar's image",
    "weed_bin": "the local stack's SeaweedFS",
}
Manifest = dict[str, Any]


@dataclass(frozen=True)
class K8sOptions:
    namespace: str = "mlops"
    # The kit's base as the overlay names it (relative to the overlay, or a remote URL).
    base: str = "../../base"
    tracking_image: str = "ghcr.io/example/mlops-platform:0.1.0"
    serving_image: str = "ghcr.io/example/mlops-serving:0.1.0"
    nginx_image: str = NGINX_IMAGE
    tracking_replicas: int = 2
    tracking_cpu: str = "1"  # the request; MLOPS_SERVER_WORKERS=0 means one per core of it
    tracking_memory: str = "2Gi"
    tracking_tmp_size: str = "10Gi"  # proxied uploads spool here
    tracking_host: str | None = None  # default: the host of settings.public_url
    ingress_class: str | None = None  # None: the cluster's default IngressClass
    # Who may reach nginx: namespaces (the Ingress controller's, the Gateway's) and
    # address blocks (a load balancer outside the cluster).
    ingress_namespaces: tuple[str, ...] = ("ingress-nginx",)
    ingress_cidrs: tuple[str, ...] = ()
    gateway: str | None = None  # NAMESPACE/NAME of a Gateway: adds an HTTPRoute
    service_monitor: bool | None = None  # None: with MLOPS_PROMETHEUS
    # Annotations of the ServiceAccounts that talk to S3 (tracking, jobs): IRSA's
    # eks.amazonaws.com/role-arn, GKE's iam.gke.io/gcp-service-account, ...
    service_account_annotations: tuple[tuple[str, str], ...] = ()
    model_name: str = "model"
    model_alias: str = "champion"
    serving_min_replicas: int = 2
    serving_max_replicas: int = 10
    backup_schedule: str = "30 2 * * *"
    backup_time_zone: str = "Etc/UTC"


# -- refusals -------------------------------------------------------------------


def tracking_host(settings: PlatformSettings, opts: K8sOptions) -> str:
    if opts.tracking_host:
        return opts.tracking_host
    return urlsplit(settings.resolved_public_url).hostname or ""


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (``500m``, ``2``, ``1.5``) in cores."""
    text = quantity.strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ConfigError(
            f"--tracking-cpu {quantity!r} is not a CPU quantity", fix="pass e.g. 500m, 1 or 2"
        ) from None


def workers(settings: PlatformSettings, opts: K8sOptions) -> int:
    """Uvicorn workers of a tracking pod: the setting, or one per requested core (1-4).

    Never the node's cores: a pod sees them all, and would start more workers than its
    CPU request pays for.
    """
    if settings.server_workers:
        return settings.server_workers
    return max(1, min(4, math.floor(cpu_cores(opts.tracking_cpu))))


def check(settings: PlatformSettings, opts: K8sOptions) -> None:
    """Refuse settings that only work on one host, or that would exhaust PostgreSQL."""
    host = str(settings.db_parts()["host"] or "")
    if host in LOOPBACK:
        var = "MLOPS_DB_URL" if settings.db_url else "MLOPS_DB_HOST"
        raise ConfigError(
            f"{var} points at {host}, the local stack's database, which pods cannot reach",
            fix="set MLOPS_DB_URL to your PostgreSQL, e.g. "
            "postgresql://mlflow@db.example.internal:5432/mlflow?sslmode=verify-full",
        )
    public = tracking_host(settings, opts)
    if not public or public in LOOPBACK:
        raise ConfigError(
            f"the public host is {public or 'empty'} (MLOPS_PUBLIC_URL is "
            f"{settings.public_url or 'unset'})",
            fix="set MLOPS_PUBLIC_URL to the URL people will use, e.g. "
            "https://mlflow.example.com (or pass --tracking-host)",
        )
    endpoint = settings.s3_endpoint
    s3_host = urlsplit(endpoint).hostname if endpoint else None
    if settings.object_store != "external" or (s3_host and s3_host in LOOPBACK):
        raise ConfigError(
            f"the object store is the local stack's {settings.object_store} at "
            f"{endpoint or 'AWS'}, which pods cannot reach",
            fix="set MLOPS_OBJECT_STORE=external and MLOPS_S3_ENDPOINT_URL to your S3 "
            "endpoint (leave it empty for AWS S3)",
        )
    per_replica = workers(settings, opts) * (settings.db_pool_size + settings.db_pool_max_overflow)
    total = opts.tracking_replicas * per_replica + JOB_CONNECTIONS
    if total + RESERVED_CONNECTIONS > settings.db_max_connections:
        raise ConfigError(
            f"{opts.tracking_replicas} replicas x {workers(settings, opts)} workers x "
            f"(MLOPS_DB_POOL_SIZE {settings.db_pool_size} + MLOPS_DB_POOL_MAX_OVERFLOW "
            f"{settings.db_pool_max_overflow}) + {JOB_CONNECTIONS} for jobs may open {total} "
            f"connections, more than MLOPS_DB_MAX_CONNECTIONS={settings.db_max_connections} "
            f"leaves after {RESERVED_CONNECTIONS} for admin work",
            fix="lower --replicas or the pool, or set MLOPS_DB_MAX_CONNECTIONS to your "
            "PostgreSQL's max_connections",
        )


# -- values ---------------------------------------------------------------------


def s3_keys_given(settings: PlatformSettings) -> bool:
    """False: S3 access comes from the pod's cloud identity (IRSA, workload identity)."""
    return bool(settings.s3_access_key_id.get_secret_value())


def db_tls_keys(settings: PlatformSettings) -> tuple[str, ...]:
    """Files of the Secret that ``db_url``'s query names under the secrets mount
    (``sslrootcert``, ``sslcert``, ``sslkey``): every container that reaches the
    database mounts them."""
    query = urlsplit(settings.db_url).query if settings.db_url else ""
    out = []
    for name, value in parse_qsl(query):
        if name in ("sslrootcert", "sslcert", "sslkey") and value.startswith(SECRETS_MOUNT + "/"):
            out.append(value[len(SECRETS_MOUNT) + 1 :])
    return tuple(out)


def secret_keys(settings: PlatformSettings, keys: tuple[str, ...]) -> tuple[str, ...]:
    """``keys`` without the S3 keys when the pods get S3 access from their identity,
    with the database's TLS files when ``db_url`` names them."""
    if not s3_keys_given(settings):
        keys = tuple(k for k in keys if k not in S3_KEYS)
    if "db_password" in keys:
        keys = (*keys, *(k for k in db_tls_keys(settings) if k not in keys))
    return keys


def not_needed(keys: tuple[str, ...]) -> str:
    """MLOPS_SECRETS_NOT_NEEDED of a container given ``keys``: every other secret."""
    return ",".join(name for name in SECRET_FIELDS if name not in keys)


def database_url(settings: PlatformSettings) -> str:
    """MLOPS_DB_URL without its password (a file of the Secret), its query kept."""
    p = settings.db_parts()
    scheme = urlsplit(settings.db_url).scheme if settings.db_url else "postgresql"
    query = urlsplit(settings.db_url).query if settings.db_url else ""
    host = f"[{p['host']}]" if ":" in str(p["host"]) else str(p["host"])
    url = f"{scheme}://{quote(str(p['user']), safe='')}@{host}:{p['port']}/{p['name']}"
    return f"{url}?{query}" if query else url


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_env(settings: PlatformSettings, opts: K8sOptions) -> dict[str, str]:
    """Every non-secret setting of the tracking pods, as ``MLOPS_*`` variables.

    Secrets (``SecretStr`` fields) come from the Secret's files; ``NOT_CARRIED`` says
    where the others went. Values the pod decides (loopback bind, workers, public URL,
    allowed hosts, never migrating) replace the host's.
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in NOT_CARRIED or isinstance(value, SecretStr) or value is None:
            continue
        env[f"{ENV_PREFIX}{name.upper()}"] = _env_value(value)
    host = tracking_host(settings, opts)
    service = f"mlflow-tracking.{opts.namespace}.svc"
    extra_hosts = [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    hosts = [host, "mlflow-tracking", service, f"{service}.cluster.local", *extra_hosts]
    env.update(
        {
            "MLOPS_STATE_DIR": "/tmp/mlops-platform",
            "MLOPS_SECRETS_DIR": SECRETS_MOUNT,
            "MLOPS_SECRETS_NOT_NEEDED": not_needed(secret_keys(settings, TRACKING_SECRET_KEYS)),
            "MLOPS_DB_URL": database_url(settings),
            # The migrate Job is the one writer; pods wait for head (serve --no-migrate).
            "MLOPS_DB_UPGRADE": "false",
            # The pod's loopback: only the nginx beside it reaches the server.
            "MLOPS_SERVER_HOST": "127.0.0.1",
            "MLOPS_SERVER_WORKERS": str(workers(settings, opts)),
            "MLOPS_PUBLIC_URL": f"https://{host}",
            "MLOPS_ALLOWED_HOSTS": ",".join(dict.fromkeys(hosts)),
            # The nginx in the pod is the proxy: it logs people in and forwards who.
            "MLOPS_PROXY_ENABLED": "true",
        }
    )
    return dict(sorted(env.items()))


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


def proxy_secret_snippet() -> str:
    """scripts/nginx-proxy-secret, as the compose nginx sources it."""
    from importlib import resources

    return (
        resources.files("mlops_platform").joinpath("templates", "nginx-proxy-secret.envsh")
    ).read_text()


def env_file(values: dict[str, str]) -> str:
    for key, value in values.items():
        if "\n" in value:
            raise ConfigError(f"{key} holds a line break", fix=f"set {key} on one line")
    return "".join(f"{k}={v}\n" for k, v in values.items())


def checksum(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _image(ref: str) -> dict[str, str]:
    """A kustomize ``images`` entry's new name and tag (or digest) from ``ref``."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return {"newName": name, "digest": digest}
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return {"newName": ref[:colon], "newTag": ref[colon + 1 :]}
    return {"newName": ref, "newTag": "latest"}


def migrate_job_name(opts: K8sOptions, config_checksum: str) -> str:
    """``mlflow-db-migrate-<tag>-<hash>``: a new image or config is a new Job."""
    tag = _image(opts.tracking_image).get("newTag") or "digest"
    slug = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")[:24].strip("-") or "image"
    digest = hashlib.sha256(f"{opts.tracking_image}\0{config_checksum}".encode()).hexdigest()
    return f"{MIGRATE_JOB}-{slug}-{digest[:8]}"


# -- patches ------------------------------------------------------------------------


def _secret_items(keys: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"key": k, "path": k} for k in keys]


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
                        {
                            "name": "secrets",
                            "secret": {
                                "secretName": SECRET_NAME,
                                "items": _secret_items(secret_keys(settings, TRACKING_SECRET_KEYS)),
                            },
                        },
                        {
                            "name": "db-secret",
                            "secret": {
                                "secretName": SECRET_NAME,
                                "items": _secret_items(secret_keys(settings, MIGRATE_SECRET_KEYS)),
                            },
                        },
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
                            "volumes": [
                                {
                                    "name": "secrets",
                                    "secret": {
                                        "secretName": SECRET_NAME,
                                        "items": _secret_items(secret_keys(settings, keys)),
                                    },
                                }
                            ],
                        }
                    }
                }
            },
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


# -- the overlay --------------------------------------------------------------------


def components(settings: PlatformSettings, opts: K8sOptions) -> list[str]:
    """The base's optional parts this install needs."""
    out = []
    if opts.tracking_replicas > 1:
        out.append("pdb")  # with one replica, a PDB would block every node drain
    if opts.gateway:
        out.append("gateway-api")
    monitor = settings.prometheus if opts.service_monitor is None else opts.service_monitor
    if monitor:
        out.append("service-monitor")
    return out


def _component_path(base: str, name: str) -> str:
    if "://" in base or base.startswith(("github.com/", "git@")):
        raise ConfigError(
            f"--base {base} is remote: components cannot be derived from it",
            fix="pass a local checkout of deploy/kubernetes/base",
        )
    return posixpath.normpath(posixpath.join(base, "..", "components", name))


def _yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


HEADER = (
    "# Rendered by `mlops-platform deploy render k8s` from the settings: an overlay of\n"
    "# values on the kit's base. Change the settings and render again; put changes of\n"
    "# your own in an overlay on top of this one.\n"
)


def render(settings: PlatformSettings, opts: K8sOptions | None = None) -> dict[str, str]:
    """The overlay's files, by path relative to its folder."""
    opts = opts or K8sOptions()
    check(settings, opts)
    config, proxy, real_ip, sum_ = _values(settings, opts)
    files: dict[str, str] = {"config.env": config, "nginx.env": proxy}
    generators: list[dict[str, Any]] = [
        {"name": "mlops-platform-config", "behavior": "replace", "envs": ["config.env"]},
        {"name": "mlops-nginx-env", "behavior": "replace", "envs": ["nginx.env"]},
    ]
    if real_ip:
        files[REAL_IP_SNIPPET] = real_ip
        generators.append({"name": "mlops-nginx", "behavior": "merge", "files": [REAL_IP_SNIPPET]})
    patches: dict[str, Manifest] = {
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
    }
    patches["patches/job-migrate.yaml"] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": MIGRATE_JOB},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {
                            "name": "secrets",
                            "secret": {
                                "secretName": SECRET_NAME,
                                "items": _secret_items(secret_keys(settings, MIGRATE_SECRET_KEYS)),
                            },
                        }
                    ]
                }
            }
        },
    }
    for doc in [
        *_network_patches(settings, opts),
        *_serving_patches(opts, sum_),
        *_route_patches(settings, opts),
        *_service_account_patches(opts),
    ]:
        kind = doc["kind"].lower()
        patches[f"patches/{kind}-{doc['metadata']['name']}.yaml"] = doc
    job = migrate_job_name(opts, sum_)
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": opts.namespace,
        "resources": [opts.base],
    }
    parts = components(settings, opts)
    if parts:
        kustomization["components"] = [_component_path(opts.base, c) for c in parts]
    kustomization["images"] = [
        {"name": "mlops-platform", **_image(opts.tracking_image)},
        {"name": "mlops-serving", **_image(opts.serving_image)},
        {"name": "nginx", **_image(opts.nginx_image)},
    ]
    kustomization["configMapGenerator"] = generators
    kustomization["patches"] = [{"path": path} for path in patches] + [
        {
            "target": {"kind": "Job", "name": MIGRATE_JOB},
            "patch": _yaml([{"op": "replace", "path": "/metadata/name", "value": job}]),
        }
    ]
    files["kustomization.yaml"] = HEADER + _yaml(kustomization)
    for path, doc in patches.items():
        files[path] = HEADER + _yaml(doc)
    return files


def _values(settings: PlatformSettings, opts: K8sOptions) -> tuple[str, str, str | None, str]:
    """config.env, nginx.env, real-ip.conf and the checksum over them and the template."""
    config = env_file(config_env(settings, opts))
    proxy = env_file(nginx_env(settings))
    real_ip = nginx.real_ip_snippet(settings)
    texts = [config, proxy, real_ip or "", nginx.template_text(), proxy_secret_snippet()]
    return config, proxy, real_ip, checksum(texts)


def migrate_job(settings: PlatformSettings, opts: K8sOptions) -> str:
    """The versioned name of the migrate Job this rendering creates."""
    return migrate_job_name(opts, _values(settings, opts)[3])


def secret_commands(settings: PlatformSettings, opts: K8sOptions) -> list[str]:
    """The Secrets the manifests reference, as the commands that create them."""
    ns = f"--namespace {opts.namespace}"
    keys = sorted(
        set(secret_keys(settings, TRACKING_SECRET_KEYS))
        | set(secret_keys(settings, BACKUP_SECRET_KEYS))
    )
    files = " ".join(f"--from-file={key}=..." for key in keys)
    out = [
        f"kubectl create secret generic {SECRET_NAME} {ns} {files}",
        f"kubectl create secret generic {HTPASSWD_SECRET} {ns} "
        f"--from-file={HTPASSWD_KEY}=.mlops-platform/htpasswd",
        f"kubectl create secret generic {SERVING_SECRET} {ns} "
        "--from-literal=username=svc-serving --from-file=password=...",
        f"kubectl create secret generic {GC_SECRET} {ns} "
        "--from-literal=username=svc-gc --from-file=password=...",
    ]
    if "service-monitor" in components(settings, opts):
        out.append(
            f"kubectl create secret generic {MONITORING_SECRET} {ns} "
            "--from-literal=username=svc-monitoring --from-file=password=..."
        )
    return out
