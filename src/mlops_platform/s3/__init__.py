"""The artifact store: a correctly configured client, the private bucket, its diagnosis
and its policy.

The package, one module per part:

- ``helpers``: what every S3 caller needs (a failed call's error code, a listing across
  pages, a batch delete)
- ``store``: the client factory, the bucket's creation
- ``diagnosis``: ``s3 diagnose`` (endpoint, key, bucket), using ``probes`` (privacy,
  round trips, the bucket's settings)
- ``policy``: ``s3 apply-policy``

Everything callers use is importable from ``mlops_platform.s3`` itself.
"""

from mlops_platform.checks import CheckResult, Status
from mlops_platform.s3.diagnosis import CREDENTIAL_CODES, Diagnosis, diagnose
from mlops_platform.s3.helpers import (
    NO_BUCKET,
    delete_keys,
    error_code,
    error_text,
    iter_objects,
    list_pages,
)
from mlops_platform.s3.policy import (
    ABORT_AFTER_DAYS,
    LIFECYCLE_RULE_ID,
    PolicyResult,
    _lifecycle_rule,
    apply_policy,
)
from mlops_platform.s3.probes import KEY_FIX, PROBE_PREFIX, PUBLIC_GROUPS, _policy_is_public
from mlops_platform.s3.store import client, endpoint_display, ensure_bucket, reachable

Check = CheckResult  # one diagnosis step: the same result type as the doctor's

__all__ = [
    "ABORT_AFTER_DAYS",
    "CREDENTIAL_CODES",
    "KEY_FIX",
    "LIFECYCLE_RULE_ID",
    "NO_BUCKET",
    "PROBE_PREFIX",
    "PUBLIC_GROUPS",
    "Check",
    "CheckResult",
    "Diagnosis",
    "PolicyResult",
    "Status",
    "_lifecycle_rule",
    "_policy_is_public",
    "apply_policy",
    "client",
    "delete_keys",
    "diagnose",
    "endpoint_display",
    "ensure_bucket",
    "error_code",
    "error_text",
    "iter_objects",
    "list_pages",
    "reachable",
]
