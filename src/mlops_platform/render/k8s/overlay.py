"""The overlay itself: ``kustomization.yaml`` over the values and patches, by path."""

from __future__ import annotations

import posixpath
from typing import Any

import yaml

from mlops_platform.errors import ConfigError
from mlops_platform.render import nginx
from mlops_platform.render.k8s.options import (
    BACKUP_SECRET_KEYS,
    GC_SECRET,
    HTPASSWD_KEY,
    HTPASSWD_SECRET,
    MIGRATE_JOB,
    MONITORING_SECRET,
    REAL_IP_SNIPPET,
    SECRET_NAME,
    SERVING_SECRET,
    TRACKING_SECRET_KEYS,
    K8sOptions,
    Manifest,
)
from mlops_platform.render.k8s.patches import overlay_patches
from mlops_platform.render.k8s.values import (
    check,
    checksum,
    config_env,
    env_file,
    image_entry,
    migrate_job_name,
    nginx_env,
    proxy_secret_snippet,
    secret_keys,
)
from mlops_platform.settings import PlatformSettings


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
    if real_ip:
        files[REAL_IP_SNIPPET] = real_ip
    docs = overlay_patches(settings, opts, sum_)
    kustomization = _kustomization(
        settings, opts, _generators(real_ip), list(docs), migrate_job_name(opts, sum_)
    )
    files["kustomization.yaml"] = HEADER + _yaml(kustomization)
    for path, doc in docs.items():
        files[path] = HEADER + _yaml(doc)
    return files


def _generators(real_ip: str | None) -> list[dict[str, Any]]:
    """The ConfigMap generators: the env files, and real-ip.conf when there is one."""
    generators: list[dict[str, Any]] = [
        {"name": "mlops-platform-config", "behavior": "replace", "envs": ["config.env"]},
        {"name": "mlops-nginx-env", "behavior": "replace", "envs": ["nginx.env"]},
    ]
    if real_ip:
        generators.append({"name": "mlops-nginx", "behavior": "merge", "files": [REAL_IP_SNIPPET]})
    return generators


def _kustomization(
    settings: PlatformSettings,
    opts: K8sOptions,
    generators: list[dict[str, Any]],
    patch_paths: list[str],
    job: str,
) -> Manifest:
    """``kustomization.yaml``: the base, its components, the images, the generators,
    the patches and the migrate Job's versioned name ``job``."""
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
        {"name": "mlops-platform", **image_entry(opts.tracking_image)},
        {"name": "mlops-serving", **image_entry(opts.serving_image)},
        {"name": "nginx", **image_entry(opts.nginx_image)},
    ]
    kustomization["configMapGenerator"] = generators
    kustomization["patches"] = [{"path": path} for path in patch_paths] + [
        {
            "target": {"kind": "Job", "name": MIGRATE_JOB},
            "patch": _yaml([{"op": "replace", "path": "/metadata/name", "value": job}]),
        }
    ]
    return kustomization


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
