"""Model registry governance: quality gates, approval, champion/challenger promotion.

MLflow gives aliases (``champion``, ``challenger``, ``staging``) but no approval step and
no compare-and-set on an alias: two people promoting at once both "win", the last write
sticks, and nothing stops an alias from landing on a version nobody checked. This module
adds the missing pieces on top of the plain MLflow REST API, so it works through the
kit's proxy with an ordinary client login:

- **Gates** (:class:`Gates`, read from YAML): metric thresholds on the version's source
  run, required tags, a signature, a size limit. :meth:`Registry.approve` evaluates
  every gate and records the outcome as version tags (``mlops.status``,
  ``mlops.gate.<gate>``, ``mlops.approved_by``, ``mlops.approved_at``); success moves
  ``staging``. Approval also pins the artifacts: ``mlops.artifacts_digest`` is a sha256
  over every file of the version (:func:`digest_tree`), downloaded through the tracking
  server; moving an alias onto the version (:meth:`Registry.verify_artifacts`) and
  serving it (:meth:`Registry.fetch_verified`) refuse when the files changed since.
- **Promotion** (:meth:`Registry.promote`): scores ``@champion`` and the challenger on a
  dataset and moves ``champion`` only when the challenger is approved and better by a
  margin.
- **Conflict-safe alias moves** (:meth:`Registry.move_alias`): a compare-and-set built
  from the one atomic primitive the registry API has — *creating a registered model
  fails when the name exists* (a primary key in the tracking database). The lock is a
  registered model named ``<LOCK_PREFIX><model>`` created with a unique token and a lease
  expiry as its tags; whoever creates it holds it. Under the lock the alias is read and
  moved only if it still points where the caller expects and the target is approved;
  after the move the alias and the lock token are read back. A holder that crashed is
  broken after its lease expires (default 120 s, far above a move's duration).
- **Audit trail**: every approval and alias move appends a registered-model tag
  ``mlops.audit.<ms>.<token>`` holding one JSON event; :meth:`Registry.history` lists
  them in order.

The library raises :class:`RegistryError` subclasses and returns result dataclasses;
``cli/registry.py`` prints them.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import operator
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_platform.errors import PlatformError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

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
_LOCK_CONTENDED = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
GATE_KEYS = ("metrics", "tags", "signature", "max_size_mb")
HIGHER_IS_BETTER = {"accuracy": True, "r2": True, "rmse": False, "mae": False, "mse": False}


# -- errors ------------------------------------------------------------------


class RegistryError(PlatformError):
    """A registry operation cannot go ahead; nothing was changed."""


class ModelNotFoundError(RegistryError):
    """The registered model or version does not exist."""


class AliasNotFoundError(RegistryError):
    """The alias is not set on the model."""


class GatesFileError(RegistryError):
    """The gates file is missing, malformed or names something the run does not have."""


class DatasetError(RegistryError):
    """The evaluation dataset cannot be read or does not match the model's signature."""


class NotApprovedError(RegistryError):
    """The version has not passed the gates."""


class ArtifactsChangedError(NotApprovedError):
    """The version's artifacts are not the ones that were approved (or were never pinned)."""


class PromotionConflictError(RegistryError):
    """The alias moved while this promotion was deciding."""

    exit_code = 3


class LockTimeoutError(RegistryError):
    """Another promotion held the model's lock for longer than the wait bound."""

    exit_code = 3


# -- results -----------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str
    shortfall: float | None = None

    def tag_value(self) -> str:
        return ("pass: " if self.passed else "fail: ") + self.detail


@dataclass(frozen=True)
class ApprovalResult:
    name: str
    version: str
    status: str
    gates: list[GateResult]
    actor: str
    at: str
    staging_before: str | None
    staging_moved: bool
    artifacts_digest: str | None = None
    artifacts_files: int = 0
    artifacts_bytes: int = 0

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["approved"] = self.approved
        return out


@dataclass(frozen=True)
class AliasMove:
    name: str
    alias: str
    before: str | None
    after: str
    token: str
    attempts: int


@dataclass(frozen=True)
class PromotionResult:
    name: str
    metric: str
    margin: float
    champion: str | None
    challenger: str
    champion_score: float | None
    challenger_score: float
    promoted: bool
    reason: str
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditEvent:
    key: str
    at: str
    event: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "at": self.at,
            "event": self.event,
            "actor": self.actor,
            **self.data,
        }


# -- gates -------------------------------------------------------------------


@dataclass(frozen=True)
class MetricGate:
    metric: str
    op: str
    threshold: float

    def check(self, value: float) -> GateResult:
        passed = OPERATORS[self.op](value, self.threshold)
        detail = f"{self.metric} = {value:.6g}, needs {self.op} {self.threshold:g}"
        shortfall = None
        if not passed:
            shortfall = abs(value - self.threshold)
            if self.op in ("==", "!="):
                detail += " (off target)" if self.op == "==" else " (equal)"
            else:
                detail += f" (short by {shortfall:.6g})"
        return GateResult(f"metric.{self.metric}", passed, detail, shortfall)


@dataclass(frozen=True)
class Gates:
    """What a version must satisfy before it may be staged or promoted."""

    metrics: tuple[MetricGate, ...] = ()
    required_tags: dict[str, str | None] = field(default_factory=dict)
    signature: bool = False
    max_size_mb: float | None = None

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "gates file") -> Gates:
        if not isinstance(data, dict):
            raise GatesFileError(
                f"{source} must be a mapping with keys {', '.join(GATE_KEYS)}",
                fix="see docs/registry.md for an example gates file",
            )
        unknown = sorted(set(data) - set(GATE_KEYS))
        if unknown:
            raise GatesFileError(
                f"unknown key {unknown[0]!r} in {source} (known: {', '.join(GATE_KEYS)})",
                fix="fix the typo in the gates file",
            )
        metrics = []
        raw_metrics = data.get("metrics") or {}
        if not isinstance(raw_metrics, dict):
            raise GatesFileError(
                f"`metrics` in {source} must map a metric to a condition, e.g. accuracy: '>= 0.9'",
                fix="fix the gates file",
            )
        for metric, condition in raw_metrics.items():
            metrics.append(_parse_condition(str(metric), condition, source))
        raw_tags = data.get("tags") or []
        if isinstance(raw_tags, list):
            tags: dict[str, str | None] = {str(t): None for t in raw_tags}
        elif isinstance(raw_tags, dict):
            tags = {str(k): None if v is None else str(v) for k, v in raw_tags.items()}
        else:
            raise GatesFileError(
                f"`tags` in {source} must be a list of tag names or a mapping of tag to value",
                fix="fix the gates file",
            )
        signature = data.get("signature", False)
        if not isinstance(signature, bool):
            raise GatesFileError(
                f"`signature` in {source} must be true or false, not {signature!r}",
                fix="fix the gates file",
            )
        size = data.get("max_size_mb")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int | float) or size <= 0
        ):
            raise GatesFileError(
                f"`max_size_mb` in {source} must be a positive number, not {size!r}",
                fix="fix the gates file",
            )
        return cls(tuple(metrics), tags, signature, None if size is None else float(size))

    @classmethod
    def load(cls, path: Path) -> Gates:
        import yaml

        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GatesFileError(
                f"cannot read gates file {path}: {exc.strerror or exc}",
                fix="pass an existing YAML file with --gates",
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise GatesFileError(
                f"gates file {path} is not valid YAML{where}", fix="fix its syntax"
            ) from None
        return cls.from_mapping(data, source=str(path))


def _parse_condition(metric: str, condition: Any, source: str) -> MetricGate:
    if isinstance(condition, bool) or not isinstance(condition, str | int | float):
        raise GatesFileError(
            f"condition for metric {metric!r} in {source} must be like '>= 0.9', not {condition!r}",
            fix="fix the gates file",
        )
    if isinstance(condition, int | float):
        return MetricGate(metric, ">=", float(condition))
    text = condition.strip()
    op = next((o for o in (">=", "<=", "==", "!=", ">", "<") if text.startswith(o)), None)
    rest = text[len(op) :] if op else text.lstrip("=<>!~")
    if op is None or rest.strip()[:1] in ("=", "<", ">", "!"):
        bad = text[: len(text) - len(text.lstrip("=<>!~")) or 1]
        raise GatesFileError(
            f"bad operator {bad!r} for metric {metric!r} in {source} "
            f"(use one of {', '.join(OPERATORS)})",
            fix="fix the gates file",
        )
    try:
        threshold = float(rest)
    except ValueError:
        raise GatesFileError(
            f"threshold {rest.strip()!r} for metric {metric!r} in {source} is not a number",
            fix="fix the gates file",
        ) from None
    if not math.isfinite(threshold):
        raise GatesFileError(
            f"threshold for metric {metric!r} in {source} must be finite", fix="fix it"
        )
    return MetricGate(metric, op, threshold)


# -- helpers -----------------------------------------------------------------


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _is_missing(exc: Exception) -> bool:
    return _error_code(exc) == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def _server_error(what: str, exc: Exception, tracking_uri: str) -> RegistryError:
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


def score(metric: str, y_true: Any, y_pred: Any) -> float:
    """A model's score on labelled data; ``HIGHER_IS_BETTER`` says which way is better."""
    import numpy as np

    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if pred.ndim > 1 and pred.shape[-1] == 1:
        pred = pred.reshape(-1)
    if metric == "accuracy":
        return float(np.mean(truth == pred))
    truth = truth.astype(float)
    pred = pred.astype(float)
    err = pred - truth
    if metric == "mse":
        return float(np.mean(err**2))
    if metric == "rmse":
        return float(np.sqrt(np.mean(err**2)))
    if metric == "mae":
        return float(np.mean(np.abs(err)))
    if metric == "r2":
        total = float(np.sum((truth - truth.mean()) ** 2))
        return 1.0 - float(np.sum(err**2)) / total if total else 0.0
    raise DatasetError(
        f"unknown metric {metric!r} (use one of {', '.join(HIGHER_IS_BETTER)})",
        fix="pass --metric with one of those",
    )


def read_dataset(path: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist", fix="pass a CSV or Parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise DatasetError(
            f"cannot read dataset {path}: {exc.__class__.__name__}: {str(exc)[:200]}",
            fix="pass a CSV with a header row, or a Parquet file",
        ) from None


def features_for(signature: Any, data: pd.DataFrame, *, where: str) -> Any:
    """The model's input from ``data``: columns checked against the signature, in its order."""
    if signature is None or signature.inputs is None:
        return data
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        spec = inputs.inputs[0]
        width = spec.shape[-1] if spec.shape else None
        if width not in (None, -1) and data.shape[1] != width:
            raise DatasetError(
                f"dataset has {data.shape[1]} feature columns but {where} expects {width}",
                fix="pass a dataset with the model's features and the --target column",
            )
        return data.to_numpy(dtype=spec.type)
    names = inputs.input_names()
    required = {s.name for s in inputs.inputs if not getattr(s, "optional", False)}
    missing = [n for n in names if n in required and n not in data.columns]
    extra = [c for c in data.columns if c not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(str, missing))}")
        if extra:
            parts.append(f"unexpected {', '.join(map(str, extra))}")
        raise DatasetError(
            f"dataset columns do not match the signature of {where}: {'; '.join(parts)}",
            fix=f"the signature wants: {', '.join(map(str, names))} (plus the --target column)",
        )
    return data[[n for n in names if n in data.columns]]


# -- artifact pinning --------------------------------------------------------


@dataclass(frozen=True)
class ArtifactDigest:
    """What approval pins: one digest over every file, and each file's size and sha256."""

    digest: str
    files: dict[str, tuple[int, str]]

    @property
    def size_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    def summary(self) -> str:
        return f"{len(self.files)} files, {self.size_bytes} bytes"

    def files_tag(self) -> str | None:
        """Each file's size and short hash, to name what changed later; None when too long."""
        value = json.dumps(
            {path: [size, sha[:16]] for path, (size, sha) in sorted(self.files.items())},
            separators=(",", ":"),
        )
        return value if len(value) <= TAG_VALUE_LIMIT else None

    def changes_since(self, files_tag: str | None) -> str:
        """The files that differ from the approved list (``files_tag``), as one short phrase."""
        try:
            recorded = json.loads(files_tag or "")
            before = {str(k): (int(v[0]), str(v[1])) for k, v in recorded.items()}
        except (ValueError, TypeError, AttributeError, IndexError):
            return f"now {self.summary()}"
        now = {path: (size, sha[:16]) for path, (size, sha) in self.files.items()}
        parts = []
        for label, paths in (
            ("changed", [p for p in now if p in before and now[p] != before[p]]),
            ("added", [p for p in now if p not in before]),
            ("removed", [p for p in before if p not in now]),
        ):
            if paths:
                shown = sorted(paths)
                more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
                parts.append(f"{label}: {', '.join(shown[:3])}{more}")
        return "; ".join(parts) or f"now {self.summary()}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest_tree(root: Path) -> ArtifactDigest:
    """sha256 over the sorted ``[relative path, size, sha256 of content]`` of every file.

    The list is JSON-encoded (``[["MLmodel",123,"ab.."],...]``, no spaces) before hashing,
    so a path cannot be confused with a size or a hash. Anyone can recompute it from a
    download of the version's artifacts.
    """
    root = Path(root)
    files: dict[str, tuple[int, str]] = {}
    if root.is_file():
        files[root.name] = (root.stat().st_size, file_sha256(root))
    else:
        for path in root.rglob("*"):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = (path.stat().st_size, file_sha256(path))
    canonical = json.dumps(
        sorted([path, size, sha] for path, (size, sha) in files.items()),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return ArtifactDigest("sha256:" + hashlib.sha256(canonical.encode()).hexdigest(), files)


@dataclass(frozen=True)
class VerifiedCopy:
    """A local copy of an approved version whose files match the approval's digest."""

    name: str
    version: str
    alias: str | None
    path: Path
    artifacts: ArtifactDigest

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "path": str(self.path),
            "artifacts_digest": self.artifacts.digest,
            "files": len(self.artifacts.files),
            "size_bytes": self.artifacts.size_bytes,
        }


# -- the registry ------------------------------------------------------------


class Registry:
    """Governance operations on one tracking server (through the proxy, as any client)."""

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
            if _is_missing(exc):
                known = self._versions(name)
                raise ModelNotFoundError(
                    f"model {name!r} has no version {version}"
                    + (f" (versions: {', '.join(known)})" if known else " (it has no versions)"),
                    fix=f"list them: mlops-platform registry history {name}",
                ) from None
            raise _server_error(f"read {name} v{version}", exc, self.tracking_uri) from None

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
            if _is_missing(exc):
                raise ModelNotFoundError(
                    f"registered model {name!r} does not exist",
                    fix="check the name: mlflow's UI lists registered models under Models",
                ) from None
            raise _server_error(f"read registered model {name!r}", exc, self.tracking_uri) from None

    def _versions(self, name: str) -> list[str]:
        try:
            found = self.client.search_model_versions(f"name='{name}'")
        except Exception:
            return []
        return sorted((str(v.version) for v in found), key=int)

    # -- gates and approval --------------------------------------------------
    def evaluate_gates(self, name: str, version: str, gates: Gates) -> list[GateResult]:
        """Check every gate; raise GatesFileError when a gate names a metric the run lacks."""
        mv = self.model_version(name, version)
        results: list[GateResult] = []
        if gates.metrics:
            if not mv.run_id:
                raise GatesFileError(
                    f"{name} v{version} has no source run, so metric gates cannot be checked",
                    fix="register versions from a run (log_model(..., registered_model_name=))",
                )
            metrics = self.client.get_run(mv.run_id).data.metrics
            unknown = [g.metric for g in gates.metrics if g.metric not in metrics]
            if unknown:
                raise GatesFileError(
                    f"metric {unknown[0]!r} in the gates file is not logged by run "
                    f"{mv.run_id} of {name} v{version} "
                    f"(it has: {', '.join(sorted(metrics)) or 'no metrics'})",
                    fix="fix the metric name in the gates file",
                )
            results += [g.check(metrics[g.metric]) for g in gates.metrics]
        for key, wanted in gates.required_tags.items():
            have = mv.tags.get(key)
            if have is None:
                results.append(GateResult(f"tag.{key}", False, f"tag {key!r} is not set"))
            elif wanted is not None and have != wanted:
                results.append(
                    GateResult(f"tag.{key}", False, f"tag {key!r} is {have!r}, needs {wanted!r}")
                )
            else:
                results.append(GateResult(f"tag.{key}", True, f"tag {key!r} = {have!r}"))
        if gates.signature or gates.max_size_mb is not None:
            uri = self.client.get_model_version_download_uri(name, version)
        if gates.signature:
            signature = self._signature(uri)
            results.append(
                GateResult("signature", True, "the model has an input signature")
                if signature is not None and signature.inputs is not None
                else GateResult(
                    "signature",
                    False,
                    "the model has no signature (log it with input_example= or signature=)",
                )
            )
        if gates.max_size_mb is not None:
            size_mb = self._size_bytes(uri) / 1e6
            ok = size_mb <= gates.max_size_mb
            detail = f"model is {size_mb:.3f} MB, limit {gates.max_size_mb:g} MB"
            if not ok:
                detail += f" (over by {size_mb - gates.max_size_mb:.3f} MB)"
            results.append(
                GateResult(
                    "size", ok, detail, None if ok else round(size_mb - gates.max_size_mb, 6)
                )
            )
        return results

    def approve(self, name: str, version: str | int, gates: Gates) -> ApprovalResult:
        """Evaluate the gates, record the outcome on the version, move ``staging`` on success."""
        version = str(version)
        results = self.evaluate_gates(name, version, gates)
        status = APPROVED if all(g.passed for g in results) else REJECTED
        pin = self.artifacts_digest(name, version)
        at = _now()
        tags = {
            "mlops.approved_by" if status == APPROVED else "mlops.rejected_by": self.actor,
            "mlops.approved_at" if status == APPROVED else "mlops.rejected_at": at,
            "mlops.reviewed_by": self.actor,
            "mlops.reviewed_at": at,
        }
        tags.update({f"mlops.gate.{g.gate}": g.tag_value()[:TAG_VALUE_LIMIT] for g in results})
        pins = {DIGEST_TAG: pin.digest, FILES_TAG: pin.files_tag() or ""}
        # Never a moment where `approved` stands next to files nobody approved: an approval
        # writes the new pin before the status, a rejection the status before the pin.
        if status == APPROVED:
            tags = {**tags, **pins, STATUS_TAG: status}
        else:
            tags = {STATUS_TAG: status, **tags, **pins}
        for key, value in tags.items():
            if key == FILES_TAG and not value:
                self._delete_version_tag(name, version, key)
                continue
            self.client.set_model_version_tag(name, version, key, value)
        staging_before = self.alias_version(name, STAGING)
        self._audit(
            name,
            "approved" if status == APPROVED else "rejected",
            version=version,
            failed=[g.gate for g in results if not g.passed],
        )
        moved = False
        for attempt in range(4):
            if status != APPROVED or staging_before == version:
                break
            try:
                move = self.move_alias(
                    name, STAGING, version, expected=staging_before, verified=pin.digest
                )
            except PromotionConflictError:
                if attempt == 3:
                    raise
                staging_before = self.alias_version(name, STAGING)
                continue
            staging_before, moved = move.before, True
            break
        return ApprovalResult(
            name, version, status, results, self.actor, at, staging_before, moved,
            pin.digest, len(pin.files), pin.size_bytes,
        )  # fmt: skip

    # -- promotion -----------------------------------------------------------
    def promote(
        self,
        name: str,
        dataset: Path,
        *,
        metric: str,
        target: str = "target",
        margin: float = 0.0,
        challenger: str | None = None,
        initial: bool = False,
        retries: int = 3,
    ) -> PromotionResult:
        """Move ``champion`` to the challenger when it is approved and better by ``margin``.

        On a conflict (the champion moved meanwhile) the challenger is re-scored against
        the new champion, up to ``retries`` times, with jittered backoff.
        """
        if metric not in HIGHER_IS_BETTER:
            raise DatasetError(
                f"unknown metric {metric!r} (use one of {', '.join(HIGHER_IS_BETTER)})",
                fix="pass --metric with one of those",
            )
        self._registered_model(name)
        challenger = str(challenger) if challenger else self.require_alias(name, CHALLENGER)
        self.model_version(name, challenger)
        pinned = self._require_approved(name, challenger)
        data = read_dataset(dataset)
        if target not in data.columns:
            raise DatasetError(
                f"dataset {dataset} has no target column {target!r} "
                f"(columns: {', '.join(map(str, data.columns))})",
                fix="pass --target with the label column's name",
            )
        labels, features = data[target], data.drop(columns=[target])
        scores: dict[str, float] = {}

        def score_of(version: str) -> float:
            if version not in scores:
                # the challenger's scored bytes are the approved ones (checked on the copy)
                pin = pinned if version == challenger else None
                scores[version] = self._score(name, version, features, labels, metric, pin)
            return scores[version]

        challenger_score = score_of(challenger)
        higher = HIGHER_IS_BETTER[metric]
        attempt = 0
        while True:
            attempt += 1
            champion = self.alias_version(name, CHAMPION)
            if champion is None and not initial:
                raise AliasNotFoundError(
                    f"model {name!r} has no @champion alias",
                    fix=f"make the first one: mlops-platform registry promote {name} "
                    f"--challenger {challenger} --initial --dataset ... --metric {metric}",
                )
            if champion == challenger:
                return PromotionResult(
                    name, metric, margin, champion, challenger, challenger_score,
                    challenger_score, False, f"v{challenger} is already the champion", attempt,
                )  # fmt: skip
            champion_score = None if champion is None else score_of(champion)
            if champion_score is not None:
                gain = (
                    challenger_score - champion_score
                    if higher
                    else champion_score - challenger_score
                )
                if gain < margin or (margin == 0 and gain <= 0):
                    reason = (
                        f"challenger v{challenger} {metric}={challenger_score:.6g} is not better "
                        f"than champion v{champion} {metric}={champion_score:.6g} by {margin:g}"
                    )
                    self._audit(
                        name, "kept", champion=champion, challenger=challenger, metric=metric,
                        champion_score=champion_score, challenger_score=challenger_score,
                    )  # fmt: skip
                    return PromotionResult(
                        name, metric, margin, champion, challenger, champion_score,
                        challenger_score, False, reason, attempt,
                    )  # fmt: skip
            try:
                move = self.move_alias(
                    name,
                    CHAMPION,
                    challenger,
                    expected=champion,
                    require_approved=True,
                    verified=pinned,
                    details={
                        "metric": metric,
                        "champion_score": champion_score,
                        "challenger_score": challenger_score,
                        "margin": margin,
                    },
                )
            except PromotionConflictError:
                if attempt > retries:
                    raise
                time.sleep(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            reason = f"v{challenger} {metric}={challenger_score:.6g} beats " + (
                f"v{champion} {metric}={champion_score:.6g}"
                if champion is not None
                else "no champion"
            )
            return PromotionResult(
                name, metric, margin, move.before, challenger, champion_score,
                challenger_score, True, reason, attempt,
            )  # fmt: skip

    def _require_approved(self, name: str, version: str, *, digest: str | None = None) -> str:
        """The approval's artifact digest; raises when not approved, unpinned or re-pinned.

        ``digest``: the pin this caller verified the files against; when the tag now holds
        another one, the version was approved again meanwhile (a conflict: re-run).
        """
        tags = self.model_version(name, version).tags
        status = tags.get(STATUS_TAG)
        fix = f"run: mlops-platform registry approve {name} {version} --gates gates.yaml"
        if status != APPROVED:
            raise NotApprovedError(
                f"{name} v{version} is not approved ({STATUS_TAG}={status or 'unset'})", fix=fix
            )
        pin = tags.get(DIGEST_TAG)
        if not pin:
            raise ArtifactsChangedError(
                f"{name} v{version} was approved before approvals pinned artifacts "
                f"(no {DIGEST_TAG} tag), so its files cannot be checked",
                fix=f"approve it again: mlops-platform registry approve {name} {version} "
                "--gates gates.yaml",
            )
        if digest is not None and pin != digest:
            raise PromotionConflictError(
                f"{name} v{version} was approved again with other artifacts while this "
                "command was checking them; nothing was changed",
                fix="re-run the command",
            )
        return str(pin)

    def _compare_pin(self, name: str, version: str, pin: str, actual: ArtifactDigest) -> None:
        if actual.digest == pin:
            return
        files_tag = self.model_version(name, version).tags.get(FILES_TAG)
        raise ArtifactsChangedError(
            f"the artifacts of {name} v{version} changed after its approval "
            f"({actual.changes_since(files_tag)}; approved {pin[:19]}..., "
            f"now {actual.digest[:19]}...)",
            fix="find out who wrote them; if the new files are intended, approve it again: "
            f"mlops-platform registry approve {name} {version} --gates gates.yaml",
        )

    # -- artifact pinning ----------------------------------------------------
    def download_version(self, name: str, version: str, dst: Path) -> Path:
        """Every file of the version, through the tracking server, into ``dst``."""
        from mlflow.artifacts import download_artifacts

        uri = self.client.get_model_version_download_uri(name, version)
        try:
            local = download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        except Exception as exc:
            raise _server_error(
                f"download the artifacts of {name} v{version} ({uri})", exc, self.tracking_uri
            ) from None
        return Path(local)

    def artifacts_digest(self, name: str, version: str) -> ArtifactDigest:
        """The digest of the version's artifacts as the tracking server serves them now."""
        with tempfile.TemporaryDirectory(prefix="mlops-pin-") as tmp:
            return digest_tree(self.download_version(name, version, Path(tmp)))

    def verify_artifacts(self, name: str, version: str | int) -> ArtifactDigest:
        """Raise unless the version is approved and its files are the ones approved."""
        version = str(version)
        pin = self._require_approved(name, version)
        actual = self.artifacts_digest(name, version)
        self._compare_pin(name, version, pin, actual)
        return actual

    def fetch_verified(
        self, name: str, dst: Path, *, alias: str | None = None, version: str | None = None
    ) -> VerifiedCopy:
        """Download an approved version (or the one ``alias`` names) and check the copy.

        What a server loads from ``path`` is exactly what was verified: no second download
        that could differ.
        """
        if (alias is None) == (version is None):
            raise RegistryError("name either an alias or a version", fix="pass one of them")
        if alias is not None:
            version = self.require_alias(name, alias)
        version = str(version)
        self.model_version(name, version)
        pin = self._require_approved(name, version)
        local = self.download_version(name, version, Path(dst))
        actual = digest_tree(local)
        self._compare_pin(name, version, pin, actual)
        return VerifiedCopy(name, version, alias, local, actual)

    def _delete_version_tag(self, name: str, version: str, key: str) -> None:
        try:
            self.client.delete_model_version_tag(name, version, key)
        except Exception as exc:
            if not _is_missing(exc):
                raise _server_error(f"update {name} v{version}", exc, self.tracking_uri) from None

    def _score(
        self,
        name: str,
        version: str,
        features: Any,
        labels: Any,
        metric: str,
        pin: str | None = None,
    ) -> float:
        import mlflow.pyfunc
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="mlops-eval-") as tmp:
            local = self.download_version(name, version, Path(tmp))
            if pin is not None:
                self._compare_pin(name, version, pin, digest_tree(local))
            signature = Model.load(str(Path(local) / "MLmodel")).signature
            x = features_for(signature, features, where=f"{name} v{version}")
            model = mlflow.pyfunc.load_model(str(local))
            return score(metric, labels, model.predict(x))

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

    # -- conflict-safe alias moves ------------------------------------------
    def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        expected: str | None,
        require_approved: bool = True,
        verified: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` only if it still points at ``expected`` (None: unset).

        Raises PromotionConflictError when it moved, NotApprovedError when the target is not
        approved at the moment of the move, ArtifactsChangedError when its files are not the
        approved ones. The files are downloaded and hashed before the lock is taken (unless
        the caller already did: ``verified`` is the pin it checked them against); under the
        lock the approval and its pin are read again. The check, the move and the audit
        event happen under the model's lock; the alias is read back before it is released.
        """
        version = str(version)
        if require_approved and verified is None:
            verified = self.verify_artifacts(name, version).digest
        with self.lock(name) as token:
            current = self.alias_version(name, alias)
            if current != expected:
                self._audit(
                    name, "conflict", alias=alias, expected=expected, found=current,
                    version=version,
                )  # fmt: skip
                raise PromotionConflictError(
                    f"@{alias} of {name!r} moved to v{current} while this promotion expected "
                    f"v{expected}; nothing was changed",
                    fix="re-run the command to decide against the new version",
                )
            if require_approved:
                self._require_approved(name, version, digest=verified)
            self._check_lock(name, token)
            self.client.set_registered_model_alias(name, alias, version)
            after = self.alias_version(name, alias)
            if after != version:
                raise PromotionConflictError(
                    f"@{alias} of {name!r} reads v{after} right after moving it to v{version}: "
                    "something outside the kit moves aliases",
                    fix="make every alias change go through `mlops-platform registry`",
                )
            self._check_lock(name, token)
            self._audit(
                name, "alias_moved", alias=alias, before=expected, after=version, token=token,
                **(details or {}),
            )  # fmt: skip
        return AliasMove(name, alias, expected, version, token, 1)

    @contextmanager
    def lock(self, name: str) -> Iterator[str]:
        """Hold the model's lock: a registered model whose creation is atomic server-side."""
        lock_name = LOCK_PREFIX + name
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.05
        while True:
            expires = time.time() + self.lease_seconds
            try:
                self.client.create_registered_model(
                    lock_name,
                    tags={"token": token, "owner": self.actor, "expires": f"{expires:.3f}"},
                    description=f"promotion lock of {name} held by {self.actor}; "
                    "mlops-platform deletes it when done",
                )
                break
            except Exception as exc:
                # Taken: ALREADY_EXISTS. Or taken and released at once: MLflow's store
                # answers a failed insert by reading the existing model, which the holder
                # may have deleted meanwhile, so a lost race can read DOES_NOT_EXIST.
                if _error_code(exc) not in _LOCK_CONTENDED:
                    raise _server_error(
                        f"take the lock of {name!r}", exc, self.tracking_uri
                    ) from None
            holder = self._lock_tags(lock_name)
            if holder.get("token") == token:  # our create went through; a retry saw it
                break
            if holder and float(holder.get("expires", "0") or 0) < time.time():
                self._break_lock(lock_name, holder.get("token"))
                continue
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"the promotion lock of {name!r} is held by {holder.get('owner', '?')} "
                    f"(waited {self.lock_wait_seconds:g} s)",
                    fix=f"retry later; a crashed holder's lock expires after "
                    f"{self.lease_seconds:g} s",
                )
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
        try:
            yield token
        finally:
            try:
                if self._lock_tags(lock_name).get("token") == token:
                    self.client.delete_registered_model(lock_name)
            except Exception:
                pass  # it expires

    def _lock_tags(self, lock_name: str) -> dict[str, str]:
        try:
            return dict(self.client.get_registered_model(lock_name).tags)
        except Exception:
            return {}

    def _check_lock(self, name: str, token: str) -> None:
        if self._lock_tags(LOCK_PREFIX + name).get("token") != token:
            raise PromotionConflictError(
                f"lost the promotion lock of {name!r} (its lease of {self.lease_seconds:g} s "
                "ran out and another promotion broke it)",
                fix="re-run the command",
            )

    def _break_lock(self, lock_name: str, stale_token: str | None) -> None:
        if self._lock_tags(lock_name).get("token") != stale_token:
            return  # someone else already broke or renewed it
        try:
            self.client.delete_registered_model(lock_name)
        except Exception:
            pass

    # -- audit trail ---------------------------------------------------------
    def _audit(self, name: str, event: str, **data: Any) -> None:
        key = f"{AUDIT_PREFIX}{int(time.time() * 1000):013d}.{uuid.uuid4().hex[:8]}"
        value = json.dumps({"event": event, "at": _now(), "actor": self.actor, **data}, default=str)
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
