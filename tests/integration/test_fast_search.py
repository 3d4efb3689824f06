"""The fast store's searches ordered by a filtered metric answer exactly as MLflow's store.

``mlops_platform.fast_store.search`` sorts by the filter's own join (no second join of
the same key, no DISTINCT) when a search is ordered by a metric it also filters on;
other searches are MLflow's statement, and are compared too. MLflow's
``SqlAlchemyStore`` and the fast store read one database on the session platform's
PostgreSQL, filled with awkward runs (NaN, ±inf, -0.0, equal values and equal start
times, missing keys, deleted runs, two experiments), and every search shape (each
comparator on metrics, params and tags, both directions, a second order before or after
the shared one, two filters on one key, every view type) is walked page by page on both
stores: the runs, their data and the page tokens must be equal. The statements the fast
store sent show which searches took its plan, and how many did.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlops_platform.fast_store import build_store, search, to_store_uri
from tests.integration.conftest import Platform
from tests.support.mlflow_stores import dispose

pytestmark = pytest.mark.integration

SEED = 20261204
ACC = [math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 0.5, 0.9, 0.9, 1.0, 0.25]
MODELS = ["bert", "xgb", "lr", "Bert", "b%x"]
TEAMS = ["a", "b", "A"]
PAGE = 7


@dataclass
class Stores:
    stock: SqlAlchemyStore
    fast: Any
    experiments: list[str]


def _fill(store: SqlAlchemyStore, rng: random.Random) -> list[str]:
    experiments = [store.create_experiment(f"search-{n}") for n in ("big", "small")]
    for i in range(60):
        experiment = experiments[0] if i < 48 else experiments[1]
        start = 1_700_000_000_000 + rng.choice([0, 0, 1, 2, 3]) * 1000  # equal start times
        run_id = store.create_run(experiment, "tester", start, [], f"run-{i}").info.run_id
        metrics = [Metric("loss", rng.choice([0.1, 0.2, 0.3]), start, 0)]
        if rng.random() < 0.85:
            metrics.append(Metric("acc", rng.choice(ACC), start, rng.randint(0, 2)))
        params = [Param("seed", str(i))]
        if rng.random() < 0.85:
            params.append(Param("model", rng.choice(MODELS)))
        tags = [RunTag("team", rng.choice(TEAMS))] if rng.random() < 0.8 else []
        store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        if rng.random() < 0.1:
            store.delete_run(run_id)
    return experiments


@pytest.fixture(scope="module")
def stores(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    settings = platform.settings
    name = f"fsearch_{secrets.token_hex(4)}"
    url = settings.model_copy(update={"db_name": name}).database_url(with_password=True)
    artifacts = str(tmp_path_factory.mktemp("fast-search-artifacts"))
    platform.superuser_sql(f'CREATE DATABASE {name} OWNER "{settings.db_user}"')
    opened: list[SqlAlchemyStore] = []
    try:
        stock = SqlAlchemyStore(url, artifacts)  # migrates the fresh database
        opened.append(stock)
        experiments = _fill(stock, random.Random(SEED))
        fast = build_store(to_store_uri(url), artifacts)
        opened.append(fast)
        yield Stores(stock, fast, experiments)
    finally:
        for store in opened:
            dispose(store)
        platform.superuser_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _shapes() -> list[tuple[str, list[str]]]:
    """(filter, order_by) pairs: most order by a key the filter joins, some do not."""
    filters = [f"metrics.acc {c} {v}" for c in (">", ">=", "<", "<=", "=", "!=") for v in (0.5, 0)]
    filters += [
        "metrics.acc > 0 and metrics.acc < 1",
        "metrics.acc >= 0.5 and params.model = 'bert'",
        "metrics.acc > -1 and attributes.status = 'RUNNING'",
        "params.model = 'bert'",
        "params.model != 'bert'",
        "params.model LIKE 'b%'",
        "params.model ILIKE 'b%'",
        "tags.team = 'a'",
        "tags.team != 'b'",
        "tags.team ILIKE 'a'",
        "params.model IS NOT NULL",  # no join of its own: MLflow's statement
    ]
    shapes = []
    for one in filters:
        kind, key = one.split(" ", 1)[0].split(".")
        shared = f"{kind}.{key}"
        shapes += [
            (one, [f"{shared} DESC"]),
            (one, [f"{shared} ASC"]),
            (one, [f"{shared} DESC", "attributes.start_time ASC"]),
            (one, ["metrics.loss DESC", shared]),
            (one, [shared, "params.model DESC" if kind != "params" else "tags.team"]),
        ]
    shapes += [
        ("metrics.acc > 0", ["attributes.created", "metrics.acc DESC"]),  # start_time's alias
        ("", ["metrics.acc DESC"]),
        ("params.seed = '3'", ["metrics.acc DESC"]),
    ]
    return shapes


def _pages(store: Any, experiments: list[str], view: int, one: str, order: list[str]) -> list[Any]:
    """Every page of the search, each as its runs (whole, as JSON) and its token."""
    pages, token = [], None
    while True:
        runs = store.search_runs(experiments, one, view, PAGE, order, token)
        token = runs.token
        # NaN equal to NaN, data in key order (the reads have no ORDER BY)
        pages.append(([json.dumps(r.to_dictionary(), sort_keys=True) for r in runs], token))
        if token is None:
            return pages
        assert len(pages) < 20


def test_searches_ordered_by_a_filtered_key_match_mlflow_page_by_page(stores: Stores) -> None:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("SELECT") and "FROM runs" in statement:
            statements.append(statement)

    planned = fallback = runs_seen = 0
    sqlalchemy.event.listen(stores.fast.engine, "before_cursor_execute", record)
    try:
        for view in (ViewType.ACTIVE_ONLY, ViewType.ALL, ViewType.DELETED_ONLY):
            experiments = (
                stores.experiments if view != ViewType.DELETED_ONLY else stores.experiments[:1]
            )
            for one, order in _shapes():
                statements.clear()
                expected = _pages(stores.stock, experiments, view, one, order)
                got = _pages(stores.fast, experiments, view, one, order)
                assert got == expected, (view, one, order)
                runs_seen += sum(len(runs) for runs, _ in expected)
                searched = [s for s in statements if "ORDER BY" in s]
                assert len(searched) == len(got), (one, order, statements)
                if search.plan(one, order) is not None:
                    planned += 1
                    assert not any("DISTINCT" in s for s in searched), (one, order)
                else:
                    fallback += 1
                    assert all("SELECT DISTINCT" in s for s in searched), (one, order)
    finally:
        sqlalchemy.event.remove(stores.fast.engine, "before_cursor_execute", record)
    # every shape of the 15 metric filters shares the join; the params' and tags' do not
    assert planned == 3 * (15 * 5 + 1) and fallback == 3 * (8 * 5 + 2), (planned, fallback)
    assert runs_seen > 3000, runs_seen  # the shapes found runs, across several pages
