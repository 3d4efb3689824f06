"""The store itself: MLflow's SqlAlchemyStore with a set-based metrics write path.

See the package's docstring (mlops_platform.fast_store) for the rules it keeps.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy.exc
from mlflow.entities import Metric, Param, Run, RunData, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.dbmodels.models import (
    SqlLatestMetric,
    SqlParam,
    SqlRun,
    SqlTag,
)
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.mlflow_tags import _get_run_name_from_tags
from mlflow.utils.search_utils import SearchUtils
from mlflow.utils.validation import (
    _validate_batch_log_data,
    _validate_batch_log_limits,
    _validate_metric,
    _validate_param_keys_unique,
    _validate_run_id,
)
from sqlalchemy import event, select
from sqlalchemy.orm.attributes import set_committed_value

from mlops_platform.fast_store import SCHEME, search, to_sqlalchemy_url

_logger = logging.getLogger(__name__)
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_INT = 2**53  # ints beyond this do not survive the trip through double precision
# MLOPS_DB_PREPARED_WRITES (the setting db_prepared_writes, passed by `serve`): "false"
# runs the metrics statement unprepared, for a pooler that cannot keep prepared statements.
PREPARED_WRITES_ENV = "MLOPS_DB_PREPARED_WRITES"

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


# MLflow's history query (SqlAlchemyStore.get_metric_history), its columns only.
_HISTORY_SQL = """
SELECT key, value, timestamp, step, is_nan FROM metrics
WHERE run_uuid = %(run_id)s AND key = %(key)s
ORDER BY timestamp, step, value
OFFSET %(offset)s LIMIT %(limit)s
"""


# The execution option that asks _execute_prepared to prepare a statement.
PREPARE = "mlops_prepare"
_NEVER = 2**62  # psycopg's prepare_threshold: no statement is prepared unless asked


def _execute_prepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """SQLAlchemy's ``do_execute`` hook: a statement run with ``PREPARE`` set is run as a
    prepared statement (psycopg's ``execute(..., prepare=True)``); True tells SQLAlchemy
    it has been executed. Everything else is SQLAlchemy's (events, errors, the
    invalidation of a connection the database dropped); only the driver call differs.

    PostgreSQL then parses and analyses the statement once per connection instead of on
    every call: for the metrics statement that was most of its cost (one metric through
    psycopg, autocommit: 1.06 -> 0.55 ms per call, PostgreSQL's CPU 0.70 -> 0.26 ms). The
    plans stay the ones PostgreSQL would make (it plans the first five runs for their
    values, then keeps a generic plan only if it is no worse).
    """
    if not context.execution_options.get(PREPARE):
        return False
    cursor.execute(statement, parameters, prepare=True)
    return True


@contextlib.contextmanager
def _mlflow_errors() -> Iterator[None]:
    """SQLAlchemy's errors as MLflow's managed session raises them (a lost database is
    TEMPORARILY_UNAVAILABLE, another SQLAlchemy error BAD_REQUEST, the rest INTERNAL_ERROR)."""
    try:
        yield
    except MlflowException:
        raise
    except sqlalchemy.exc.OperationalError as error:
        _logger.exception("SQLAlchemy database error. The following exception is caught.")
        raise MlflowException(str(error), error_code=TEMPORARILY_UNAVAILABLE) from error
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise MlflowException(str(error), error_code=BAD_REQUEST) from error
    except Exception as error:
        raise MlflowException(str(error), error_code=INTERNAL_ERROR) from error


@contextlib.contextmanager
def _autocommit(engine: Any) -> Iterator[Any]:
    """A pooled connection of ``engine`` outside any transaction (one statement on it is
    its own), its SQLAlchemy errors raised as MLflow's managed session raises them."""
    with _mlflow_errors(), engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


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


def _plan_with_the_values(dbapi_connection: Any, connection_record: Any) -> None:
    """No automatic server-side prepared statements on the store's connections.

    psycopg 3 prepares a statement on its fifth run on a connection, and PostgreSQL then
    plans it for any parameter values (a generic plan) from its sixth run on whenever that
    plan's estimate is no worse than the plans made for the values. For ``search_runs``
    the generic estimate knows neither the experiment nor the param value: with the index
    pack, "metrics.accuracy > 0.9 and params.model = 'bert-base'" in a 3,200-run
    experiment took 34 ms per call for ten calls and 100 ms from the eleventh on, on one
    connection (docs/performance.md). Unprepared, every statement is planned with its
    values, as psycopg2 always did. The one statement the store asks to prepare is its
    metrics write (``_execute_prepared``): the threshold is a count no statement reaches,
    not None, which would refuse that request too.
    """
    dbapi_connection.prepare_threshold = _NEVER


# A connection checked in less than this ago is not pinged when it is checked out again.
PING_IDLE_SECONDS = 0.5
_CHECKED_IN = "mlops_checked_in"


def _note_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info[_CHECKED_IN] = time.monotonic()


def _ping_if_idle(
    dialect: Any, dbapi_connection: Any, connection_record: Any, connection_proxy: Any
) -> None:
    """Ping a connection that has been idle ``PING_IDLE_SECONDS`` or more; one the
    database dropped is replaced (``InvalidatePoolError``: the pool reconnects, and
    drops every connection older than that, as SQLAlchemy's own pre-ping does)."""
    checked_in = connection_record.info.get(_CHECKED_IN)
    if checked_in is None or time.monotonic() - checked_in < PING_IDLE_SECONDS:
        return  # just opened, or back in the pool a moment ago
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as error:
        if dialect.is_disconnect(error, dbapi_connection, None):
            raise sqlalchemy.exc.InvalidatePoolError() from error
        raise


def _ping_only_idle_connections(engine: Any) -> None:
    """MLflow's engines ping PostgreSQL (``SELECT 1``) on every checkout of a pooled
    connection: a round trip before each statement of a short request (11 % of the
    server's active samples under a history loop). Here only a connection idle for
    ``PING_IDLE_SECONDS`` is pinged, as HikariCP does (its ``aliveBypassWindowMs``, 500 ms):
    a database that restarted or failed over was away longer than that, so every
    connection that predates it is pinged and replaced. What is given up: a connection
    dropped within half a second of its last use (a backend killed by hand) fails one
    statement, which MLflow answers as TEMPORARILY_UNAVAILABLE (503, retried by MLflow's
    client) and SQLAlchemy then replaces."""
    pool = engine.pool
    if not getattr(pool, "_pre_ping", False):
        return  # no pings asked for: nothing to narrow (or a SQLAlchemy that moved it)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
    pool._pre_ping = False  # a pool engine.dispose() recreates keeps it, and the listeners


# Set while MLflow's _search_runs runs in this thread: its runs then come without their
# params, tags and metrics, which the fast store reads afterwards as plain rows.
_searching = threading.local()
_RUN_DATA = ("latest_metrics", "params", "tags")


@event.listens_for(SqlRun, "load")
def _without_run_data(run: SqlRun, context: Any) -> None:
    """During a fast search, a run loads with its three collections set empty and
    loaded: MLflow's ``to_mlflow_entity`` then reads them without a query."""
    if getattr(_searching, "active", False):
        for name in _RUN_DATA:
            set_committed_value(run, name, [])


class FastSqlAlchemyStore(SqlAlchemyStore):
    """MLflow's SqlAlchemyStore with set-based SQL for metric writes (PostgreSQL only)."""

    @classmethod
    def _get_or_create_engine(cls, db_uri: str) -> Any:
        # MLflow keeps one engine per URI; this store's URIs are its own (they carry its
        # application_name), so the listener touches no engine of MLflow's stores.
        engine = super()._get_or_create_engine(db_uri)
        if not event.contains(engine, "connect", _plan_with_the_values):
            event.listen(engine, "connect", _plan_with_the_values)
            event.listen(engine, "do_execute", _execute_prepared)
            _ping_only_idle_connections(engine)
            engine.dispose()  # the connection MLflow opened to wait for the database
        return engine

    def __init__(self, db_uri: str, default_artifact_root: str | None, read_db_uri: Any = None):
        super().__init__(to_sqlalchemy_url(db_uri), default_artifact_root, read_db_uri)
        if self.db_type != "postgresql":
            raise MlflowException(
                f"the {SCHEME} store needs PostgreSQL, got a {self.db_type} URI; "
                "use the plain database URI for other databases",
                INTERNAL_ERROR,
            )
        self.prepared_writes = os.environ.get(PREPARED_WRITES_ENV, "true").lower() != "false"

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
        # One statement on an autocommit connection is its own transaction: the BEGIN and
        # COMMIT round trips of a session around it are gone (as for the history read).
        with _autocommit(self.engine) as connection:
            options = {PREPARE: self.prepared_writes}
            run_ok = connection.exec_driver_sql(_LOG_METRICS_SQL, params, options).scalar()
        if not run_ok:
            # Missing or not active: MLflow's code raises MLflow's error (and, should the
            # run have come back meanwhile, logs the metrics as MLflow would).
            return super()._log_metrics_once(run_id, metrics)
        return None

    def _get_eager_run_query_options(self):  # type: ignore[no-untyped-def]
        if getattr(_searching, "active", False):
            return []  # _without_run_data leaves them empty; _with_run_data reads them
        return super()._get_eager_run_query_options()

    def _search_runs(  # type: ignore[no-untyped-def]
        self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    ):
        """MLflow's search (filters, order, paging, inputs and outputs), then the returned
        runs' params, tags and latest metrics as plain rows. A search ordered by a metric
        its filter joins uses that join for the order (``fast_store.search``).

        MLflow loads them with the runs as ORM objects (``selectinload``): a third of the
        handler's time listing 100 runs (py-spy), for rows that only become entities.
        The three reads here are MLflow's own (``WHERE run_uuid IN …``) without the ORM.
        """
        shared = search.plan(filter_string, order_by)
        _searching.active = True
        try:
            if shared is None:
                runs, token = super()._search_runs(
                    experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
                )
            else:  # ordered by a key the filter joins: one join for both (fast_store.search)
                runs, token = search.search(
                    self, shared, experiment_ids, run_view_type, max_results, page_token
                )
        finally:
            _searching.active = False
        return self._with_run_data(runs), token

    def _with_run_data(self, runs: list[Run]) -> list[Run]:
        if not runs:
            return runs
        ids = [run.info.run_id for run in runs]
        metrics: dict[str, list[Metric]] = {run_id: [] for run_id in ids}
        params: dict[str, list[Param]] = {run_id: [] for run_id in ids}
        tags: dict[str, list[RunTag]] = {run_id: [] for run_id in ids}
        m, p, t = SqlLatestMetric, SqlParam, SqlTag
        with self.ManagedSessionMaker() as session:
            for row in session.execute(
                select(m.run_uuid, m.key, m.value, m.timestamp, m.step, m.is_nan).where(
                    m.run_uuid.in_(ids)
                )
            ):
                value = float("nan") if row.is_nan else row.value
                metrics[row.run_uuid].append(Metric(row.key, value, row.timestamp, row.step))
            for run_id, key, value in session.execute(
                select(p.run_uuid, p.key, p.value).where(p.run_uuid.in_(ids))
            ):
                params[run_id].append(Param(key, value))
            for run_id, key, value in session.execute(
                select(t.run_uuid, t.key, t.value).where(t.run_uuid.in_(ids))
            ):
                tags[run_id].append(RunTag(key, value))
        out = []
        for run in runs:
            run_id = run.info.run_id
            if not run.info.run_name and (name := _get_run_name_from_tags(tags[run_id])):
                run.info._set_run_name(name)  # as SqlRun.to_mlflow_entity does
            data = RunData(metrics=metrics[run_id], params=params[run_id], tags=tags[run_id])
            out.append(Run(run.info, data, run.inputs, run.outputs))
        return out

    def _read_engine(self) -> Any:
        """The engine MLflow's read-only sessions use: its read replica's, if any."""
        return getattr(self, "read_engine", None) or self.engine

    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):  # type: ignore[no-untyped-def]
        """MLflow's query, order and paging, as one statement outside a transaction.

        MLflow loads every point as a ``SqlMetric`` (identity map, state tracking) and
        the session's commit then expires each one: with the query, half of the handler's
        time on a 1,000-point history (py-spy). Plain rows build the same ``Metric``
        entities. The statement is MLflow's (``WHERE run_uuid, key ORDER BY timestamp,
        step, value OFFSET … LIMIT …``) run on an autocommit connection: one statement
        sees one snapshot, and the ``BEGIN`` and ``COMMIT`` round trips of a transaction
        around it (half of a short history's database time) are gone. A pooled
        connection of the engine MLflow reads from (its read replica's, when it has one),
        not an ORM session (server CPU per 10-point history 1.72 -> 1.55-1.62 ms, p50
        2.87 -> 2.66-2.80 ms through nginx); errors become MLflow's as in its session.

        A store whose ``_validate_run_accessible`` does something (MLflow's workspace
        stores) keeps a transaction, so the check and the read see the same data.
        """
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        params = {
            "run_id": run_id,
            "key": metric_key,
            "offset": offset,
            # LIMIT NULL is LIMIT ALL in PostgreSQL.
            "limit": None if max_results is None else max_results + 1,
        }
        checks_run = (
            type(self)._validate_run_accessible is not SqlAlchemyStore._validate_run_accessible
        )
        if checks_run:
            with self.ManagedSessionMaker() as session:
                self._validate_run_accessible(session, run_id)
                rows = session.connection().exec_driver_sql(_HISTORY_SQL, params).all()
        else:
            with _autocommit(self._read_engine()) as connection:
                rows = connection.exec_driver_sql(_HISTORY_SQL, params).all()
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
