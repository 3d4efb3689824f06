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

The package, one module per part:

- ``options``: the kit's fixed names, the Secret's keys per container, ``K8sOptions``
- ``values``: refusals, then the values (env files, Secret keys, images, checksum)
- ``patches``: the strategic-merge patches of the base
- ``overlay``: ``kustomization.yaml`` and ``render()``

Everything callers use is importable from ``mlops_platform.render.k8s`` itself.
"""

from mlops_platform.render.k8s.options import (
    BACKUP_SECRET_KEYS,
    CHECKSUM_ANNOTATION,
    CLIENT_LABEL,
    GC_SECRET,
    GC_SECRET_KEYS,
    HTPASSWD_KEY,
    HTPASSWD_SECRET,
    JOB_CONNECTIONS,
    LOOPBACK,
    MIGRATE_JOB,
    MIGRATE_SECRET_KEYS,
    MONITORING_SECRET,
    NGINX_IMAGE,
    NGINX_PORT,
    NGINX_SECRET_KEYS,
    NGINX_SNIPPETS_DIR,
    NGINX_USERS_DIR,
    NOT_CARRIED,
    PRESTOP_SECONDS,
    PROXY_SECRET_SNIPPET,
    REAL_IP_SNIPPET,
    S3_KEYS,
    SECRET_NAME,
    SECRETS_MOUNT,
    SERVING_SECRET,
    TRACKING_SECRET_KEYS,
    K8sOptions,
    Manifest,
)
from mlops_platform.render.k8s.overlay import (
    HEADER,
    components,
    migrate_job,
    render,
    secret_commands,
)
from mlops_platform.render.k8s.patches import DNS, ingress_peers, overlay_patches
from mlops_platform.render.k8s.values import (
    check,
    checksum,
    config_env,
    cpu_cores,
    database_url,
    db_tls_keys,
    env_file,
    image_entry,
    migrate_job_name,
    nginx_env,
    not_needed,
    proxy_secret_snippet,
    s3_keys_given,
    secret_keys,
    tracking_host,
    workers,
)

__all__ = [
    "BACKUP_SECRET_KEYS",
    "CHECKSUM_ANNOTATION",
    "CLIENT_LABEL",
    "DNS",
    "GC_SECRET",
    "GC_SECRET_KEYS",
    "HEADER",
    "HTPASSWD_KEY",
    "HTPASSWD_SECRET",
    "JOB_CONNECTIONS",
    "LOOPBACK",
    "MIGRATE_JOB",
    "MIGRATE_SECRET_KEYS",
    "MONITORING_SECRET",
    "NGINX_IMAGE",
    "NGINX_PORT",
    "NGINX_SECRET_KEYS",
    "NGINX_SNIPPETS_DIR",
    "NGINX_USERS_DIR",
    "NOT_CARRIED",
    "PRESTOP_SECONDS",
    "PROXY_SECRET_SNIPPET",
    "REAL_IP_SNIPPET",
    "S3_KEYS",
    "SECRETS_MOUNT",
    "SECRET_NAME",
    "SERVING_SECRET",
    "TRACKING_SECRET_KEYS",
    "K8sOptions",
    "Manifest",
    "check",
    "checksum",
    "components",
    "config_env",
    "cpu_cores",
    "database_url",
    "db_tls_keys",
    "env_file",
    "image_entry",
    "ingress_peers",
    "migrate_job",
    "migrate_job_name",
    "nginx_env",
    "not_needed",
    "overlay_patches",
    "proxy_secret_snippet",
    "render",
    "s3_keys_given",
    "secret_commands",
    "secret_keys",
    "tracking_host",
    "workers",
]
