"""The ``.env`` file: every setting documented, the chosen values set, the rest commented."""

from __future__ import annotations

from pydantic import SecretStr

from mlops_platform.settings import ENV_PREFIX, PlatformSettings

GROUPS = (
    ("General", ("env", "state_dir", "secrets_dir", "secrets_not_needed", "kek_")),
    ("Database (PostgreSQL)", ("db_",)),
    ("Object store (S3)", ("object_store", "s3_")),
    (
        "Tracking server",
        (
            "server_",
            "public_url",
            "allowed_hosts",
            "artifact_mode",
            "job_execution",
            "prometheus",
            "flask_secret_key",
        ),
    ),
    ("Clients", ("client_",)),
    ("Auth proxy (nginx)", ("proxy_",)),
    ("Identity and permissions", ("auth_",)),
    ("Backup and retention", ("backup_",)),
    ("Monitoring", ("monitoring", "disk_")),
    ("Binaries", ("postgres_bin_dir", "nginx_bin", "weed_bin")),
)


def default_text(name: str) -> str:
    field = PlatformSettings.model_fields[name]
    default = field.default
    if isinstance(default, SecretStr):
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return "" if default is None else str(default)


def env_file_text(values: dict[str, str], *, header: str) -> str:
    """Every setting under its group; those in ``values`` are set, the others show the default."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    done: set[str] = set()
    for title, prefixes in GROUPS:
        lines += ["", f"# --- {title} " + "-" * max(3, 60 - len(title))]
        for name, field in PlatformSettings.model_fields.items():
            if name in done or not any(name == p or name.startswith(p) for p in prefixes):
                continue
            done.add(name)
            var = f"{ENV_PREFIX}{name.upper()}"
            lines.append(f"# {field.description}")
            if name in values:
                lines.append(f"{var}={values[name]}")
            else:
                lines.append(f"# {var}={default_text(name)}")
    missing = set(PlatformSettings.model_fields) - done
    assert not missing, f"settings without a group: {sorted(missing)}"
    return "\n".join(lines) + "\n"
