"""The store itself: MLflow's SqlAlchemyStore with a set-based metrics write path.

See the package's docstring (mlops_platform.fast_store) for the rules it keeps.
"""

from __future__ import annotations

import math
from typing import Any

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.search_utils import SearchUtils
from mlflow.utils.validation import (
    _validate_batch_log_data,
    _validate_batch_log_limits,
    _validate_metric,
    _validate_param_keys_unique,
    _validate_run_id,
)

from mlops_platform.fast_store import SCHEME, to_sqlalchemy_url

_INT64 = (-(2**63), 2**63 - 1)
_EXACT_INT = 2**53  # ints beyond this do not survive the trip through double precision

# One round trip: the run check, the rows, and latest_metrics. Data-modifying CTEs all
# run; `ins` returns only the rows really inserted, so duplicates of stored rows and
# of earlier rows of the same batch do not count for latest_metrics (as in MLflow,
# whose retry after an IntegrityError folds in only the rows that were new).
_LOG_METRICS_SQL = """
WITH run AS (
    SELECT 1 FROM runs WHERE run_uuid = %(run_id)s AND lifecycle_stage = 'active'
),
input AS (
    SELECT u.ord, u.key, u.value, u.ts, u.step, u.is_nan
    FROM unnest(
        %(keys)s::varchar[], %(values)s::float8[], %(timestamps)s::int8[],
        %(steps)s::int8[], %(is_nan)s::bool[]
    ) WITH ORDINALITY AS u(key, value, ts, step, is_nan, ord)
    WHERE EXISTS (SELECT 1 FROM run)
),
ins AS (
    -- In the primary key's order, not the batch's: two writers inserting the same rows
    -- then wait for each other in one order and never deadlock (the batch's order made
    -- them, under 8 racing writers).
    INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)
    SELECT key, value, ts, %(run_id)s, step, is_nan FROM input
    ORDER BY key, ts, step, value, is_nan
    ON CONFLICT DO NOTHING
    RETURNING key, value, timestamp, step, is_nan
),
best AS (
    SELECT DISTINCT ON (i.key) i.key, i.value, i.timestamp, i.step, i.is_nan
    FROM ins AS i
    JOIN input AS p
      ON p.key = i.key AND p.ts = i.timestamp AND p.step = i.step
     AND p.value = i.value AND p.is_nan = i.is_nan
    ORDER BY i.key, i.step DESC, i.timestamp DESC, i.value DESC, p.ord
),
up AS (
    INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
    SELECT key, value, timestamp, step, is_nan, %(run_id)s FROM best ORDER BY key
    ON CONFLICT (key, run_uuid) DO UPDATE
    -- MLflow updates the loaded row through the ORM, which writes only the columns
    -- whose value changed by Python's ==: a 0 over a -0 (or the reverse) keeps the sign.
    SET value = CASE WHEN EXCLUDED.value = latest_metrics.value
                     THEN latest_metrics.value ELSE EXCLUDED.value END,
        timestamp = EXCLUDED.timestamp, step = EXCLUDED.step, is_nan = EXCLUDED.is_nan
    WHERE (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value)
        > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)
    RETURNING 1
)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM ins), (SELECT count(*) FROM up)
"""


def _fast_row(metric: Metric) -> tuple[str, float, int, int] | None:
    """The metric as plain (key, value, timestamp, step), or None when MLflow's code
    must handle it (types whose round trip through PostgreSQL could differ)."""
    value, timestamp, step = metric.value, metric.timestamp, metric.step
    if type(timestamp) is not int or not _INT64[0] <= timestamp <= _INT64[1]:
        return None
    if type(step) is not int or not _INT64[0] <= step <= _INT64[1]:
        return None
    if isinstance(value, float):
        return metric.key, float(value), timestamp, step
    if type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
        return metric.key, float(value), timestamp, step
    return None


class FastSqlAlchemyStore(SqlAlchemyStore):
    """MLflow's SqlAlchemyStore with set-based SQL for metric writes (PostgreSQL only)."""

    def __init__(self, db_uri: str, default_artifact_root: str | None, read_db_uri: Any = None):
        super().__init__(to_sqlalchemy_url(db_uri), default_artifact_root, read_db_uri)
        if self.db_type != "postgresql":
            raise MlflowException(
                f"the {SCHEME} store needs PostgreSQL, got a {self.db_type} URI; "
                "use the plain database URI for other databases",
                INTERNAL_ERROR,
            )

    def log_batch(self, run_id, metrics, params, tags):  # type: ignore[no-untyped-def]
        # Params, tags and logged-model metrics keep MLflow's path (and its ordering).
        if params or tags or any(m.model_id is not None for m in metrics):
            return super().log_batch(run_id, metrics, params, tags)
        # MLflow's validation, in MLflow's order; the run check happens in the metrics
        # statement (and, when it fails, in MLflow's code, which raises MLflow's error).
        _validate_run_id(run_id)
        metrics, params, tags = _validate_batch_log_data(metrics, params, tags)
        _validate_batch_log_limits(metrics, params, tags)
        _validate_param_keys_unique(params)
        try:
            # Already validated just above, as MLflow's log_batch does before its own
            # _log_metrics validates them again (which can no longer fail): skip that.
            self._run_with_deadlock_retry(self._log_metrics_once, run_id, metrics, validated=True)
        except MlflowException:
            raise
        except Exception as e:
            raise MlflowException(e, INTERNAL_ERROR) from e

    def _log_metrics_once(self, run_id, metrics, validated=False):  # type: ignore[no-untyped-def]
        if not metrics:
            return super()._log_metrics_once(run_id, metrics)
        is_single_metric = len(metrics) == 1
        keys: list[str] = []
        values: list[float] = []
        timestamps: list[int] = []
        steps: list[int] = []
        nans: list[bool] = []
        fast = True
        for idx, metric in enumerate(metrics):
            if not validated:
                _validate_metric(
                    metric.key,
                    metric.value,
                    metric.timestamp,
                    metric.step,
                    path="" if is_single_metric else f"metrics[{idx}]",
                )
            row = _fast_row(metric) if fast else None
            if row is None:
                fast = False
                continue
            key, value, timestamp, step = row
            is_nan = math.isnan(value)
            if is_nan:
                value = 0.0
            elif math.isinf(value):
                value = 1.7976931348623157e308 if value > 0 else -1.7976931348623157e308
            keys.append(key)
            values.append(value)
            timestamps.append(timestamp)
            steps.append(step)
            nans.append(is_nan)
        if not fast:
            return super()._log_metrics_once(run_id, metrics)
        params = {
            "run_id": run_id,
            "keys": keys,
            "values": values,
            "timestamps": timestamps,
            "steps": steps,
            "is_nan": nans,
        }
        with self.ManagedSessionMaker(read_only=False) as session:
            run_ok = session.connection().exec_driver_sql(_LOG_METRICS_SQL, params).scalar()
        if not run_ok:
            # Missing or not active: MLflow's code raises MLflow's error (and, should the
            # run have come back meanwhile, logs the metrics as MLflow would).
            return super()._log_metrics_once(run_id, metrics)
        return None

    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):  # type: ignore[no-untyped-def]
        """MLflow's query, order and paging, reading columns instead of ORM objects.

        MLflow loads every point as a ``SqlMetric`` (identity map, state tracking) and
        the session's commit then expires each one: with the query, half of the handler's
        time on a 1,000-point history (py-spy). Plain rows build the same ``Metric``
        entities.
        """
        with self.ManagedSessionMaker() as session:
            self._validate_run_accessible(session, run_id)
            offset = SearchUtils.parse_start_offset_from_page_token(page_token)
            query = (
                session.query(
                    SqlMetric.key,
                    SqlMetric.value,
                    SqlMetric.timestamp,
                    SqlMetric.step,
                    SqlMetric.is_nan,
                )  # fmt: skip
                .filter(SqlMetric.run_uuid == run_id, SqlMetric.key == metric_key)
                .order_by(SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
                .offset(offset)
            )
            if max_results is not None:
                query = query.limit(max_results + 1)
            rows = query.all()
        next_token = None
        if max_results is not None and len(rows) == max_results + 1:
            next_token = SearchUtils.create_page_token(offset + max_results)
            rows = rows[:max_results]
        return PagedList(
            [
                Metric(key=key, value=float("nan") if is_nan else value, timestamp=ts, step=step)
                for key, value, ts, step, is_nan in rows
            ],
            next_token,
        )
