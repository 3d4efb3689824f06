"""``search_runs`` ordered by a metric that its filter already joins.

MLflow's store builds the search as one inner join per filter on a metric, param or tag
(``latest_metrics``, ``params``, ``tags`` rows of that key matching the comparison), one
LEFT OUTER join per ``order_by`` on such a key (that key's rows, to sort by their
value), and ``SELECT DISTINCT`` over the whole row. For the most common search of a
sweep, "metrics.accuracy > 0.9 … order by metrics.accuracy DESC", PostgreSQL cannot see
that the two joins of ``accuracy`` are the same row: it finds every match through the
filter, probes ``latest_metrics`` again for each one to sort, then sorts all matches
with their whole run row for the DISTINCT. At 100,000 runs (a 49,000-run experiment,
the index pack applied) that statement took 95 ms and read 34,000 buffers.

Here the order uses the filter's own join instead, and the statement has no DISTINCT;
the answer is the same, row for row and in the same order:

- every joined subquery holds the rows of ONE key, and (key, run_uuid) is the primary
  key of all three tables: no join can repeat a run, so DISTINCT removes nothing;
- a run passes an inner join on (table, key) only if it has that key's row, the one row
  the order's outer join would have found: sorting by the filter's row is sorting by
  the same value, ``is_nan`` and NULL-ness (MLflow's ``CASE`` is kept as it is);
- everything else is MLflow's: its filter subqueries (``_get_sqlalchemy_filter_clauses``,
  NaN rules included), its sort keys and tie-breakers (start time, then run id), its
  experiment check, offsets and page tokens, inputs and outputs.

With the order on the filter's join, PostgreSQL walks the matching metric rows in value
order from the pack's ``(key, value)`` index and stops after the page: 23 ms and 9,300
buffers for the statement above.

Metrics only. The same reasoning holds for a param or tag, but measured in that
experiment their statements got slower, not faster ("params.model = 'bert-base'" ordered
by ``params.model``: 89 -> 148 ms): with no ordered index on their values and no
DISTINCT, PostgreSQL expects to stop early, walks the 20,000 matching params and probes
the runs one by one (80,000 buffers) instead of hashing the experiment's runs.

``plan`` decides: any search it does not take (no order on a filtered metric, a dataset
filter, whose join can repeat a run, or an input MLflow would refuse) is MLflow's own
``_search_runs``, errors included. ``tests/integration/test_fast_search.py`` compares
both stores' answers and pages on real PostgreSQL for every comparator and order shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow.entities import Run, RunInputs, RunOutputs
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.store.tracking import sqlalchemy_store as mlflow_sql
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
from mlflow.utils.search_utils import SearchUtils
from sqlalchemy import case, select, true

_NO_ROW_NEEDED = ("IS NULL", "IS NOT NULL")  # MLflow checks these with EXISTS, not a join


@dataclass(frozen=True)
class Order:
    """One ``order_by`` clause, and the metric filter whose join it reuses, if any."""

    key_type: str
    key: str
    ascending: bool
    shares: dict[str, Any] | None


@dataclass(frozen=True)
class Plan:
    orders: tuple[Order, ...]
    filters: tuple[dict[str, Any], ...]  # the filters that keep a join of their own


def _table(key_type: str) -> Any:
    """The table a filter or order on KEY_TYPE joins, or None (attributes)."""
    if SearchUtils.is_metric(key_type, "="):
        return SqlLatestMetric
    if SearchUtils.is_param(key_type, "="):
        return SqlParam
    if SearchUtils.is_tag(key_type, "="):
        return SqlTag
    return None


def plan(filter_string: str | None, order_by: list[str] | None) -> Plan | None:
    """The shared-join plan of this search, or None for MLflow's own statement."""
    # Every order on a metric names its type ("metric." or "metrics."): the UI's run list
    # (ordered by start time) skips the parse, ~0.4 ms of sqlparse per clause.
    if not order_by or not any("metric" in clause.lower() for clause in order_by):
        return None
    try:
        parsed = [SearchUtils.parse_order_by_for_search_runs(clause) for clause in order_by]
        if not any(_table(key_type) is SqlLatestMetric for key_type, _, _ in parsed):
            return None  # no order on a metric: nothing to share (the UI's run list)
        filters = SearchUtils.parse_search_filter(filter_string)
    except MlflowException:
        return None  # MLflow's code raises its own error, in its own order
    if any(
        _table(f["type"]) is None and f["type"] != SearchUtils._ATTRIBUTE_IDENTIFIER
        for f in filters
    ):
        return None  # a dataset filter: its join can repeat a run
    rest = list(filters)
    orders, seen = [], set()
    for key_type, key, ascending in parsed:
        key = SearchUtils.translate_key_alias(key)
        if (key_type, key) in seen:
            return None  # MLflow refuses duplicate order keys
        seen.add((key_type, key))
        table = _table(key_type)
        shares = None
        if table is SqlLatestMetric:  # params and tags: see the module's docstring
            shares = next(
                (
                    f
                    for f in rest
                    if _table(f["type"]) is table
                    and SearchUtils.translate_key_alias(f["key"]) == key
                    and f["comparator"].upper() not in _NO_ROW_NEEDED
                ),
                None,
            )
            if shares is not None:
                rest.remove(shares)
        orders.append(Order(key_type, key, ascending, shares))
    if all(order.shares is None for order in orders):
        return None
    return Plan(tuple(orders), tuple(rest))


def _joined(store: Any, session: Any, one_filter: dict[str, Any]) -> Any:
    """MLflow's subquery for one filter on a metric, param or tag."""
    _, (subquery,), _ = mlflow_sql._get_sqlalchemy_filter_clauses(
        [one_filter], session, store._get_dialect()
    )
    return subquery


def _statement(store: Any, session: Any, the_plan: Plan, experiment_ids: Any, stages: Any) -> Any:
    """MLflow's search statement with each order on its filter's join, without DISTINCT."""
    attribute_filters, joins, _ = mlflow_sql._get_sqlalchemy_filter_clauses(
        list(the_plan.filters), session, store._get_dialect()
    )
    stmt = select(SqlRun)
    for subquery in joins:
        stmt = stmt.join(subquery, SqlRun.run_uuid == subquery.c.run_uuid)
    sort: list[Any] = []
    for order in the_plan.orders:
        table = _table(order.key_type)
        if table is None:
            value = getattr(SqlRun, SqlRun.get_attribute_name(order.key))
            missing = case((value.is_(None), 1), else_=0)
        else:
            if order.shares is not None:
                rows = _joined(store, session, order.shares)
                stmt = stmt.join(rows, SqlRun.run_uuid == rows.c.run_uuid)
            else:
                rows = select(table).where(table.key == order.key).subquery()
                stmt = stmt.outerjoin(rows, SqlRun.run_uuid == rows.c.run_uuid)
            value = rows.c.value
            if table is SqlLatestMetric:
                missing = case((rows.c.is_nan == true(), 1), (value.is_(None), 2), else_=0)
            else:
                missing = case((value.is_(None), 1), else_=0)
        sort += [missing, value if order.ascending else value.desc()]
    if not any(
        o.key_type == SearchUtils._ATTRIBUTE_IDENTIFIER and o.key == SqlRun.start_time.key
        for o in the_plan.orders
    ):
        sort.append(SqlRun.start_time.desc())
    sort.append(SqlRun.run_uuid)
    ids = store._filter_experiment_ids(session, mlflow_sql._parse_experiment_ids(experiment_ids))
    return (
        stmt.options(*store._get_eager_run_query_options())
        .where(
            SqlRun.experiment_id.in_(ids),
            SqlRun.lifecycle_stage.in_(stages),
            *attribute_filters,
        )
        .order_by(*sort)
    )


def search(
    store: Any,
    the_plan: Plan,
    experiment_ids: Any,
    run_view_type: Any,
    max_results: int | None,
    page_token: str | None,
) -> tuple[list[Run], str | None]:
    """``SqlAlchemyStore._search_runs`` over the plan's statement: the same validation,
    paging, inputs and outputs, the runs without params, tags and metrics when the
    store's eager options leave them out (the fast store reads those afterwards)."""
    store._validate_max_results_param(max_results, allow_null=True)
    stages = set(LifecycleStage.view_type_to_stages(run_view_type))
    offset = SearchUtils.parse_start_offset_from_page_token(page_token)
    with store.ManagedSessionMaker() as session:
        stmt = _statement(store, session, the_plan, experiment_ids, stages).offset(offset)
        if max_results is not None:
            stmt = stmt.limit(max_results + 1)
        runs = [row.to_mlflow_entity() for row in session.execute(stmt).scalars().all()]
        run_ids = [run.info.run_id for run in runs]
        inputs = store._get_run_inputs(run_uuids=run_ids, session=session)
        outputs = store._get_model_outputs_bulk(run_ids=run_ids, session=session)
        runs = [
            Run(run.info, run.data, RunInputs(inputs[i]), RunOutputs(outputs[run.info.run_id]))
            for i, run in enumerate(runs)
        ]
    token = None
    if max_results is not None and len(runs) == max_results + 1:
        token = SearchUtils.create_page_token(offset + max_results)
        runs = runs[:max_results]
    return runs, token
