"""Model registry governance: quality gates, approval, champion/challenger promotion.

MLflow gives aliases (``champion``, ``challenger``, ``staging``) but no approval step and
no compare-and-set on an alias: two people promoting at once both "win", the last write
sticks, and nothing stops an alias from landing on a version nobody checked. This package
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

The package, one module per part: ``errors``, ``results``, ``common`` (tag names and
helpers), ``gates``, ``scoring`` (datasets and metrics), and the layers of
:class:`Registry`, each a class adding one concern to the one before: ``client``
(lookups, the audit trail), ``pinning``, ``locking`` (the lock, alias moves, the retry
on a conflict), ``approval``, ``promotion`` (with the pure :func:`decide`). Everything
callers use is importable from ``mlops_platform.registry`` itself.
"""

from mlops_platform.errors import PlatformError
from mlops_platform.registry.common import (
    APPROVED,
    AUDIT_PREFIX,
    CHALLENGER,
    CHAMPION,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_LOCK_WAIT_SECONDS,
    DIGEST_TAG,
    FILES_TAG,
    LOCK_CONTENDED,
    LOCK_PREFIX,
    REJECTED,
    STAGING,
    STATUS_TAG,
    TAG_PREFIX,
    TAG_VALUE_LIMIT,
    default_actor,
    error_code,
    is_missing,
    now_iso,
    server_error,
)
from mlops_platform.registry.errors import (
    AliasNotFoundError,
    ArtifactsChangedError,
    DatasetError,
    GatesFileError,
    LockTimeoutError,
    ModelNotFoundError,
    NotApprovedError,
    PromotionConflictError,
    RegistryError,
)
from mlops_platform.registry.gates import GATE_KEYS, OPERATORS, Gates, MetricGate, parse_condition
from mlops_platform.registry.pinning import ArtifactDigest, VerifiedCopy, digest_tree, file_sha256
from mlops_platform.registry.promotion import Decision, Promotion, decide
from mlops_platform.registry.results import (
    AliasMove,
    ApprovalResult,
    AuditEvent,
    GateResult,
    PromotionResult,
)
from mlops_platform.registry.scoring import HIGHER_IS_BETTER, features_for, read_dataset, score


class Registry(Promotion):
    """Governance operations on one tracking server (through the proxy, as any client).

    Lookups and the audit trail (``client``), artifact pinning (``pinning``), the lock and
    conflict-safe alias moves (``locking``), gates and approval (``approval``), promotion
    (``promotion``): each module adds its methods to the layer before it.
    """


__all__ = [
    "APPROVED",
    "AUDIT_PREFIX",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_LOCK_WAIT_SECONDS",
    "DIGEST_TAG",
    "FILES_TAG",
    "GATE_KEYS",
    "HIGHER_IS_BETTER",
    "LOCK_PREFIX",
    "OPERATORS",
    "REJECTED",
    "STAGING",
    "STATUS_TAG",
    "TAG_PREFIX",
    "TAG_VALUE_LIMIT",
    "LOCK_CONTENDED",
    "AliasMove",
    "AliasNotFoundError",
    "ApprovalResult",
    "ArtifactDigest",
    "ArtifactsChangedError",
    "AuditEvent",
    "DatasetError",
    "Decision",
    "GateResult",
    "Gates",
    "GatesFileError",
    "LockTimeoutError",
    "MetricGate",
    "ModelNotFoundError",
    "NotApprovedError",
    "PlatformError",
    "PromotionConflictError",
    "PromotionResult",
    "Registry",
    "RegistryError",
    "VerifiedCopy",
    "decide",
    "error_code",
    "is_missing",
    "now_iso",
    "parse_condition",
    "server_error",
    "default_actor",
    "digest_tree",
    "features_for",
    "file_sha256",
    "read_dataset",
    "score",
]
