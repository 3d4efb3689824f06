"""Where values come from besides the environment: secret files, and the names they use.

Docker and Kubernetes mount secrets as files (``/run/secrets/<name>``); a file wins
over a ``MLOPS_*`` variable of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from mlops_platform.errors import ConfigError

ENV_PREFIX = "MLOPS_"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
SECRET_FIELDS = (
    "db_password",
    "s3_access_key_id",
    "s3_secret_access_key",
    "flask_secret_key",
    "proxy_password",
    "proxy_secret",
    "s3_admin_access_key_id",
    "s3_admin_secret_access_key",
    "s3_backup_access_key_id",
    "s3_backup_secret_access_key",
    "kek_passphrase",
)
# Per-purpose object-store keys: the kit's SeaweedFS gets one identity per purpose; an
# empty one falls back to MLOPS_S3_ACCESS_KEY_ID (an external store, or an older .env).
S3_PURPOSE_FIELDS = (
    "s3_admin_access_key_id",
    "s3_admin_secret_access_key",
    "s3_backup_access_key_id",
    "s3_backup_secret_access_key",
)


class SecretFilesSource(PydanticBaseSettingsSource):
    """Secrets from files named after the field (``db_password`` or ``mlops_db_password``).

    Docker and Kubernetes mount secrets this way; a file wins over the environment.
    """

    def __init__(self, settings_cls: type[BaseSettings], secrets_dir: Path) -> None:
        super().__init__(settings_cls)
        self.secrets_dir = secrets_dir

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if not self.secrets_dir.is_dir():
            return found
        for name in SECRET_FIELDS:
            for candidate in (name, f"mlops_{name}", f"{ENV_PREFIX}{name.upper()}"):
                path = self.secrets_dir / candidate
                if not path.exists():
                    continue
                if path.is_dir():
                    raise ConfigError(
                        f"secret file {path} is a directory",
                        fix=f"replace it with a file holding the value of {name}",
                    )
                try:
                    found[name] = path.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(
                        f"cannot read secret file {path}: {exc.__class__.__name__}",
                        fix="make it a readable UTF-8 file for this user",
                    ) from None
                break
        return found
