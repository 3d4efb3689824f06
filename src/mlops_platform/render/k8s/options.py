"""What a Kubernetes install is: the kit's fixed names, the Secret's keys per container,
and :class:`K8sOptions`, the choices the settings do not hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    tracking_tmp_size: str = "10Gi"  # MLflow's own artifact views spool here
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
