"""The kit's Prometheus exporter: what `doctor` knows, as series (`mlops-platform metrics`).

Cheap to scrape: what costs something (the doctor's checks, counts and sizes from the
database, the bucket's size, the backups) is collected by a background loop, each group
at its own interval, and a scrape only reads the cached values. Every group exposes the
age of its values (``mlops_collect_age_seconds``) and whether its last collection worked
(``mlops_collect_success``). What is cheap is read at scrape time: free disk space and the
new lines of the proxy's access log (lockouts, rate limiting, responses by class).

Series (all prefixed ``mlops_``; docs/monitoring.md lists them with their alerts):

- ``check_status{component,check}`` 0 ok, 1 warn, 2 fail (the doctor's exit codes), and
  ``check_duration_seconds{component,check}``: one series per doctor check;
- ``database_migrations_pending``, ``database_size_bytes{database}``,
  ``tracking_objects{kind}`` (experiments, runs, registered_models, model_versions);
- ``bucket_size_bytes``, ``bucket_objects``;
- ``backup_last_verified_timestamp_seconds`` (0 when there is none),
  ``backup_last_verified_size_bytes``, ``backups``;
- ``disk_free_ratio{path}``, ``disk_free_bytes{path}``;
- ``proxy_lockouts_total``, ``proxy_rate_limited_total``, ``proxy_responses_total{code}``.

The package: ``groups`` (what is collected), ``sigv4`` (the bucket listing without boto3),
``collector`` (the cache and the scrape), ``exporter`` (the process). Every name is
importable from ``mlops_platform.metrics`` itself.
"""

from mlops_platform.metrics.collector import (
    COUNTERS,
    HELP,
    AccessLogCounter,
    GroupState,
    PlatformCollector,
    Runner,
    disk_samples,
    series_names,
)
from mlops_platform.metrics.exporter import (
    LEAN_GROUPS,
    Exporter,
    default_access_log,
    groups_for,
    lean_groups,
    main,
    subprocess_runner,
)
from mlops_platform.metrics.groups import (
    COUNTED,
    DEFAULT_INTERVALS,
    GROUPS,
    STATUS_VALUE,
    Sample,
    collect_backup,
    collect_checks,
    collect_inventory,
    collect_storage,
    pending_migrations,
    storage_with_boto3,
)
from mlops_platform.metrics.sigv4 import S3_NS, s3_get

__all__ = [
    "COUNTED",
    "COUNTERS",
    "DEFAULT_INTERVALS",
    "GROUPS",
    "HELP",
    "LEAN_GROUPS",
    "S3_NS",
    "STATUS_VALUE",
    "AccessLogCounter",
    "Exporter",
    "GroupState",
    "PlatformCollector",
    "Runner",
    "Sample",
    "collect_backup",
    "collect_checks",
    "collect_inventory",
    "collect_storage",
    "default_access_log",
    "disk_samples",
    "groups_for",
    "lean_groups",
    "main",
    "pending_migrations",
    "s3_get",
    "series_names",
    "storage_with_boto3",
    "subprocess_runner",
]
