"""An opt-in MLflow tracking store with a set-based write path for metrics.

MLflow's ``SqlAlchemyStore`` turns every metric of a batch into an ORM object, then
reads, locks and rewrites ``latest_metrics`` row by row. This store is that very class
with one method replaced: the metrics of ``log_batch`` and ``log_metric`` go to
PostgreSQL as ONE statement per call, which checks the run, inserts the rows
(``INSERT … ON CONFLICT DO NOTHING``) and folds them into ``latest_metrics``
(``INSERT … ON CONFLICT DO UPDATE … WHERE newer``), with MLflow's rules:

- validation: MLflow's own ``_validate_metric`` with the same paths, so the same
  exceptions, messages and error codes;
- a row identical to one already stored (same batch or an earlier one) is skipped;
- NaN is stored as ``value = 0, is_nan = true``, ±inf as ±1.7976931348623157e308
  (MLflow's ``sanitize_metric_value``);
- the latest value of a key is the maximum by ``(step, timestamp, value)`` among the
  rows actually inserted, the first one in batch order on a tie, and it replaces the
  stored one only when strictly greater (keeping the stored value's sign when the two
  are equal, 0 over -0, as MLflow's ORM update does).

Anything outside the common shape (a run that is missing or not active, a value that
is not a float or a small int, a step or timestamp that is not a 64-bit int, metrics
of a logged model, params or tags in the batch) goes through MLflow's own code, so
errors and corner cases stay MLflow's. ``tests/integration/test_fast_store.py``
checks the equivalence row by row against the stock store on real PostgreSQL.

Two reads are lighter as well: ``get_metric_history`` runs MLflow's query, order and
paging as one statement on an autocommit connection, over plain rows instead of ORM
objects (whose commit-time expiry cost half the handler's time on a long history), and
``search_runs`` keeps MLflow's search but reads the returned runs' params, tags and
latest metrics as plain rows; a search ordered by a metric its filter joins sorts by
that join, without a second join of the key or a DISTINCT (``fast_store.search``). The same
test compares every history it wrote; ``tests/integration/test_fast_views.py`` compares
search answers with MLflow's own handler over MLflow's own store, and
``tests/integration/test_fast_search.py`` the searches of the shared join with MLflow's
store, page by page.

Its connections prepare one statement on the server, the metrics write (parsed once
per connection instead of on every call; ``MLOPS_DB_PREPARED_WRITES=false`` turns that
off for a pooler that cannot keep prepared statements), and nothing else: psycopg 3
prepares any statement from its fifth run, and PostgreSQL's generic plan for a prepared
search was three times slower with the index pack (``store._plan_with_the_values``).
Writes run outside a transaction (one statement is its own), and a pooled connection is
pinged only after half a second idle (``store._ping_only_idle_connections``).

It registers the URI scheme ``mlops-postgresql`` (entry point group
``mlflow.tracking_store``): ``mlops-postgresql://user@host:port/db`` is
``postgresql+psycopg://user@host:port/db`` with this store in front.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_platform.fast_store.store import FastSqlAlchemyStore

# This module is MLflow's entry point and must not import MLflow: MLflow loads its
# store entry points while it is itself being imported. The store lives in `.store`.
SCHEME = "mlops-postgresql"
DRIVER_SCHEME = "postgresql+psycopg"
APPLICATION_NAME = "mlops-fast-store"
# MLflow's server hands its artifact root to in-process store builders this way
# (mlflow.tracking._tracking_service.utils._SERVER_ARTIFACT_ROOT_ENV_VAR).
_SERVER_ARTIFACT_ROOT_ENV_VAR = "_MLFLOW_SERVER_ARTIFACT_ROOT"


def to_sqlalchemy_url(store_uri: str) -> str:
    """``mlops-postgresql://…`` -> ``postgresql+psycopg://…?application_name=…``.

    The connections carry ``application_name=mlops-fast-store`` (unless the URI names
    one), so ``pg_stat_activity`` shows which store a server really runs.
    """
    prefix = SCHEME + "://"
    if not store_uri.startswith(prefix):
        return store_uri
    url = DRIVER_SCHEME + "://" + store_uri[len(prefix) :]
    if "application_name=" not in url:
        url += ("&" if "?" in url else "?") + "application_name=" + APPLICATION_NAME
    return url


def to_store_uri(sqlalchemy_url: str) -> str:
    """A PostgreSQL SQLAlchemy URL (any driver) -> the same database under this scheme."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return f"{SCHEME}://{rest}"


def build_store(store_uri: str, artifact_uri: str | None = None, **_: Any) -> FastSqlAlchemyStore:
    """The ``mlflow.tracking_store`` entry point for ``mlops-postgresql://`` URIs."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH

    from mlops_platform.fast_store.store import FastSqlAlchemyStore

    if artifact_uri is None:
        # What MLflow's own builder does: inside the server, the server's artifact root.
        artifact_uri = os.environ.get(
            _SERVER_ARTIFACT_ROOT_ENV_VAR, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        )
    return FastSqlAlchemyStore(store_uri, artifact_uri)
