"""Which searches the fast store answers with one join for a metric filter and its order.

``tests/integration/test_fast_search.py`` compares the answers with MLflow's store.
"""

from __future__ import annotations

from mlops_platform.fast_store import search


def test_the_plan_shares_only_what_a_join_already_holds() -> None:
    shared = search.plan("metrics.acc > 0.9 and params.model = 'bert'", ["metrics.acc DESC"])
    assert shared is not None
    assert [o.shares for o in shared.orders] == [
        {"type": "metric", "key": "acc", "comparator": ">", "value": "0.9"}
    ]
    assert [f["key"] for f in shared.filters] == ["model"]
    # Two filters on the key: the first is shared, the second keeps its own join.
    two = search.plan("metrics.acc > 0 and metrics.acc < 1", ["metrics.acc"])
    assert two is not None and [f["comparator"] for f in two.filters] == ["<"]
    for one, order in [
        ("metrics.acc > 0.9", None),  # no order
        ("metrics.acc > 0.9", ["metrics.loss DESC"]),  # a key the filter does not join
        ("metrics.acc > 0.9", ["attributes.start_time DESC"]),  # an attribute: no join
        ("params.acc = 'x'", ["metrics.acc DESC"]),  # same name, another table
        ("params.model = 'x'", ["params.model DESC"]),  # params keep MLflow's statement
        ("tags.team LIKE 'a%'", ["tags.team", "metrics.acc"]),  # and tags too
        ("metrics.acc IS NOT NULL", ["metrics.acc DESC"]),  # EXISTS, no join
        ("dataset.name = 'd' and metrics.acc > 0", ["metrics.acc"]),  # may repeat a run
        ("metrics.acc > 0", ["metrics.acc", "metrics.acc DESC"]),  # MLflow refuses it
        ("no such = grammar", ["metrics.acc"]),  # MLflow refuses it
    ]:
        assert search.plan(one, order) is None, (one, order)
