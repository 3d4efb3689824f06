"""Tag names, defaults and the small helpers every part of the registry uses."""

from __future__ import annotations

import getpass
import socket
from datetime import datetime, timezone

from mlops_platform.registry.errors import RegistryError

LOCK_PREFIX = "mlops-lock."
TAG_PREFIX = "mlops."
AUDIT_PREFIX = "mlops.audit."
STATUS_TAG = "mlops.status"
DIGEST_TAG = "mlops.artifacts_digest"
FILES_TAG = "mlops.artifacts_files"
TAG_VALUE_LIMIT = 4900
APPROVED = "approved"
REJECTED = "rejected"
CHAMPION = "champion"
CHALLENGER = "challenger"
STAGING = "staging"
DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_LOCK_WAIT_SECONDS = 60.0
LOCK_CONTENDED = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def is_missing(exc: Exception) -> bool:
    return error_code(exc) == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def server_error(what: str, exc: Exception, tracking_uri: str) -> RegistryError:
    """One line for a failed call: unreachable server and refused login get their own fix."""
    text = str(exc)
    if "Failed to establish a new connection" in text or "Max retries exceeded" in text:
        return RegistryError(
            f"cannot {what}: the tracking server at {tracking_uri} does not answer",
            fix='check MLFLOW_TRACKING_URI (eval "$(mlops-platform client-env)") and '
            "that the platform runs (mlops-platform status)",
        )
    if "error code 401" in text or "error code 403" in text:
        return RegistryError(
            f"cannot {what}: {tracking_uri} refused the login",
            fix="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            '(eval "$(mlops-platform client-env)")',
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return RegistryError(f"cannot {what}: {first[:300]}")
