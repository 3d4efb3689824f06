"""The first layer of :class:`~mlops_platform.registry.Registry`: the MLflow client, the
lookups every operation starts with, model files read for the gates, the audit trail."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from mlops_platform.registry.common import (
    AUDIT_PREFIX,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_LOCK_WAIT_SECONDS,
    STATUS_TAG,
    default_actor,
    is_missing,
    now_iso,
    server_error,
)
from mlops_platform.registry.errors import AliasNotFoundError, ModelNotFoundError
from mlops_platform.registry.results import AuditEvent

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class RegistryClient:
    """Lookups and the audit trail on one tracking server (through the proxy, as any client)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        client: MlflowClient | None = None,
        actor: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.actor = actor or default_actor()
        self.lease_seconds = lease_seconds
        self.lock_wait_seconds = lock_wait_seconds

    # -- lookups -------------------------------------------------------------
    def model_version(self, name: str, version: str | int) -> ModelVersion:
        self._registered_model(name)
        try:
            return self.client.get_model_version(name, str(version))
        except Exception as exc:
            if is_missing(exc):
                known = self._versions(name)
                raise ModelNotFoundError(
                    f"model {name!r} has no version {version}"
                    + (f" (versions: {', '.join(known)})" if known else " (it has no versions)"),
                    fix=f"list them: mlops-platform registry history {name}",
                ) from None
            raise server_error(f"read {name} v{version}", exc, self.tracking_uri) from None

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version an alias points at, or None when the alias is not set."""
        model = self._registered_model(name)
        aliases = getattr(model, "aliases", None) or {}
        if isinstance(aliases, dict):
            value = aliases.get(alias)
        else:  # older clients: a list of RegisteredModelAlias
            value = next((a.version for a in aliases if a.alias == alias), None)
        return None if value is None else str(value)

    def require_alias(self, name: str, alias: str) -> str:
        version = self.alias_version(name, alias)
        if version is None:
            raise AliasNotFoundError(
                f"model {name!r} has no @{alias} alias",
                fix=f"set it first, e.g. mlops-platform registry promote {name} --challenger "
                "VERSION --initial",
            )
        return version

    def status(self, name: str, version: str) -> str | None:
        return self.model_version(name, version).tags.get(STATUS_TAG)

    def _registered_model(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except Exception as exc:
            if is_missing(exc):
                raise ModelNotFoundError(
                    f"registered model {name!r} does not exist",
                    fix="check the name: mlflow's UI lists registered models under Models",
                ) from None
            raise server_error(f"read registered model {name!r}", exc, self.tracking_uri) from None

    def _versions(self, name: str) -> list[str]:
        try:
            found = self.client.search_model_versions(f"name='{name}'")
        except Exception:
            return []
        return sorted((str(v.version) for v in found), key=int)

    def _delete_version_tag(self, name: str, version: str, key: str) -> None:
        try:
            self.client.delete_model_version_tag(name, version, key)
        except Exception as exc:
            if not is_missing(exc):
                raise server_error(f"update {name} v{version}", exc, self.tracking_uri) from None

    # -- what the gates read of a model's files ------------------------------
    def _signature(self, artifact_uri: str) -> Any:
        from mlflow.artifacts import download_artifacts
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="mlops-sig-") as tmp:
            try:
                local = download_artifacts(
                    artifact_uri=artifact_uri.rstrip("/") + "/MLmodel",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except Exception:
                return None
            return Model.load(local).signature

    def _size_bytes(self, artifact_uri: str) -> int:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri)
        total = 0
        pending: list[str | None] = [None]
        while pending:
            path = pending.pop()
            for info in repo.list_artifacts(path):
                if info.is_dir:
                    pending.append(info.path)
                else:
                    total += int(info.file_size or 0)
        return total

    # -- audit trail ---------------------------------------------------------
    def _audit(self, name: str, event: str, **data: Any) -> None:
        key = f"{AUDIT_PREFIX}{int(time.time() * 1000):013d}.{uuid.uuid4().hex[:8]}"
        value = json.dumps(
            {"event": event, "at": now_iso(), "actor": self.actor, **data}, default=str
        )
        self.client.set_registered_model_tag(name, key, value[:4900])

    def history(self, name: str) -> list[AuditEvent]:
        """Every approval, rejection, alias move, kept champion and conflict, oldest first."""
        model = self._registered_model(name)
        events = []
        for key in sorted(k for k in model.tags if k.startswith(AUDIT_PREFIX)):
            try:
                data = json.loads(model.tags[key])
            except ValueError:
                continue
            events.append(
                AuditEvent(
                    key,
                    str(data.pop("at", "")),
                    str(data.pop("event", "?")),
                    str(data.pop("actor", "?")),
                    data,
                )
            )
        return events
