"""The kit's PostgreSQL index pack: measured indexes for what MLflow's search actually runs.

Each index is derived from the SQL MLflow 3.x emits for ``search_runs`` and the UI and was
kept only where EXPLAIN ANALYZE on a database of 100k+ runs showed it pays (see
``docs/indexes.md`` and ``benchmarks/indexes.py``). Every index is safe for the longest
values MLflow accepts: no btree over ``params.value`` or ``tags.value`` (varchar(8000) /
6000-character params exceed the btree row-size limit); those columns get hash indexes,
which store a 4-byte hash whatever the value's length.

Indexes are built with ``CREATE INDEX CONCURRENTLY`` (no write lock on a live server) and
tracked in the kit's own table ``mlops_platform_indexes``; MLflow's ``alembic_version`` is
never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy

from mlops_platform.db import connection, where
from mlops_platform.errors import PlatformError, SchemaError
from mlops_platform.settings import PlatformSettings

# 2: extended statistics on params/tags (key, value)
# 3: mlops_runs_exp_stage_order_start, the run listing ordered by start time (nulls last)
# 4: mlops_latest_metrics_key_value, metric filters read from the index alone
PACK_VERSION = 4
VERSION_TABLE = "mlops_platform_indexes"


class IndexPackError(PlatformError):
    """An index of the pack could not be built or dropped."""


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    definition: str  # an index: what follows ``ON <table>``; statistics: kinds and columns
    serves: str
    kind: str = "index"  # or "statistics": a planner statistics object, no index

    def create_sql(self) -> str:
        if self.kind == "statistics":
            return (
                f"CREATE STATISTICS IF NOT EXISTS {self.name} {self.definition} FROM {self.table}"
            )
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} {self.definition}"
        )

    def drop_sql(self) -> str:
        if self.kind == "statistics":
            return f"DROP STATISTICS IF EXISTS {self.name}"
        return f"DROP INDEX CONCURRENTLY IF EXISTS {self.name}"


PACK: tuple[IndexSpec, ...] = (
    IndexSpec(
        "mlops_runs_exp_stage_start",
        "runs",
        "(experiment_id, lifecycle_stage, start_time DESC)",
        "listing an experiment's runs newest first (UI run table, search_runs without a "
        "filter); MLflow has no index on runs.experiment_id",
    ),
    # `search_runs(order_by=["attributes.start_time DESC"])` -- the UI's run table and the
    # harness's listing -- puts runs without a start time last the portable way:
    # `ORDER BY CASE WHEN (runs.start_time IS NULL) THEN 1 ELSE 0 END, runs.start_time DESC,
    # runs.run_uuid` (MLflow 3.17 `_get_orderby_clauses`). No plain column index gives
    # that order, so PostgreSQL sorted the whole experiment; this one gives it after the
    # two equality columns. The expression must stay exactly MLflow's for the planner to
    # match it (tests/integration/test_indexes.py checks the plan of MLflow's own SQL).
    IndexSpec(
        "mlops_runs_exp_stage_order_start",
        "runs",
        "(experiment_id, lifecycle_stage, (CASE WHEN start_time IS NULL THEN 1 ELSE 0 END), "
        "start_time DESC, run_uuid)",
        "listing an experiment's runs ordered by `attributes.start_time DESC` (the UI run "
        "table): MLflow orders by a nulls-last CASE on start_time, then run_uuid",
    ),
    IndexSpec(
        "mlops_params_value_hash",
        "params",
        "USING hash (value)",
        "filters `params.x = 'v'` (hash: safe for 6,000-character values)",
    ),
    IndexSpec(
        "mlops_tags_value_hash",
        "tags",
        "USING hash (value)",
        "filters `tags.x = 'v'` (hash: safe for 8,000-character values)",
    ),
    # `metrics.x > v` becomes a join with `latest_metrics WHERE key = 'x' AND value > v`.
    # MLflow's only way in is the run_uuid index, one probe per run of the experiment
    # (3,200 probes, 12,800 buffers for a 4,000-run experiment at 100k runs). This one
    # gives the matching rows of every experiment in key and value order, run_uuid and
    # is_nan included so they come from the index alone, for a hash join with the
    # experiment's runs (272 buffers). The column `value` changes on most metric writes,
    # so those updates are no longer HOT: measured -7 % on `log_batch` in-process.
    IndexSpec(
        "mlops_latest_metrics_key_value",
        "latest_metrics",
        "(key, value) INCLUDE (run_uuid, is_nan)",
        "filters `metrics.x > v` (and <, =, ...) within an experiment: the matches read "
        "from the index alone",
    ),
    # Without these the planner multiplies the selectivities of `key = 'model'` and
    # `value = 'bert-base'` as if independent (a value names its key), underestimates a
    # common param 5x and, given the hash index, picks a nested loop over every run
    # that has the value in any experiment: 2.6x the buffers of the plan without the pack.
    IndexSpec(
        "mlops_params_key_value_stats",
        "params",
        "(dependencies, mcv) ON key, value",
        "row estimates of `params.x = 'v'` (a value implies its key), so a common value "
        "in a big experiment keeps the hash join",
        kind="statistics",
    ),
    IndexSpec(
        "mlops_tags_key_value_stats",
        "tags",
        "(dependencies, mcv) ON key, value",
        "row estimates of `tags.x = 'v'`, as for params",
        kind="statistics",
    ),
)

# Measured and rejected (benchmarks/indexes.py keeps measuring them; docs/indexes.md says why).
CANDIDATES_REJECTED: tuple[IndexSpec, ...] = (
    IndexSpec(
        "mlops_latest_metrics_key_value_heap",
        "latest_metrics",
        "(key, value)",
        "metric filters, each match then read from the table (0.8-1.2x: the v4 index "
        "carries run_uuid instead)",
    ),
)


@dataclass(frozen=True)
class IndexState:
    name: str
    table: str
    definition: str
    serves: str
    state: str  # applied | missing | invalid
    bytes: int
    pack_version: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "table": self.table,
            "definition": self.definition,
            "serves": self.serves,
            "state": self.state,
            "bytes": self.bytes,
            "pack_version": self.pack_version,
        }


@dataclass(frozen=True)
class IndexAction:
    name: str
    action: str  # created | rebuilt | skipped | dropped | absent
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "action": self.action, "seconds": round(self.seconds, 2)}


def _require_mlflow_schema(conn: sqlalchemy.Connection, settings: PlatformSettings) -> None:
    tables = set(sqlalchemy.inspect(conn).get_table_names())
    missing = {spec.table for spec in PACK} - tables
    if missing:
        raise SchemaError(
            f"the database at {where(settings)} has no MLflow tables "
            f"({', '.join(sorted(missing))})",
            fix="start the tracking server once (`mlops-platform up`) or run "
            "`mlops-platform db upgrade` first",
        )


def _ensure_version_table(conn: sqlalchemy.Connection) -> None:
    conn.execute(
        sqlalchemy.text(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            "name text PRIMARY KEY, pack_version integer NOT NULL, "
            "definition text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    )


def _existing(conn: sqlalchemy.Connection) -> dict[str, tuple[bool, int]]:
    """Name -> (valid, bytes) for every index or statistics object named like the pack's."""
    rows = conn.execute(
        sqlalchemy.text(
            "SELECT c.relname, i.indisvalid, pg_relation_size(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname LIKE 'mlops\\_%' "
            "UNION ALL SELECT s.stxname, true, 0 FROM pg_statistic_ext s "
            "JOIN pg_namespace n ON n.oid = s.stxnamespace "
            "WHERE n.nspname = current_schema() AND s.stxname LIKE 'mlops\\_%'"
        )
    ).all()
    return {r[0]: (bool(r[1]), int(r[2])) for r in rows}


def _recorded(conn: sqlalchemy.Connection) -> dict[str, int]:
    present = conn.execute(
        sqlalchemy.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": VERSION_TABLE}
    ).scalar()
    if not present:
        return {}
    rows = conn.execute(sqlalchemy.text(f"SELECT name, pack_version FROM {VERSION_TABLE}")).all()
    return {r[0]: int(r[1]) for r in rows}


def list_indexes(settings: PlatformSettings) -> list[IndexState]:
    """Each index of the pack with its state: applied, missing or invalid (a failed build)."""
    with connection(settings) as conn:
        existing = _existing(conn)
        recorded = _recorded(conn)
    out = []
    for spec in PACK:
        if spec.name in existing:
            valid, size = existing[spec.name]
            state = "applied" if valid else "invalid"
        else:
            state, size = "missing", 0
        out.append(
            IndexState(
                spec.name,
                spec.table,
                spec.definition,
                spec.serves,
                state,
                size,
                recorded.get(spec.name),
            )
        )
    return out


def pack_applied(settings: PlatformSettings) -> bool:
    return all(s.state == "applied" for s in list_indexes(settings))


def apply_pack(
    settings: PlatformSettings,
    *,
    specs: tuple[IndexSpec, ...] = PACK,
    progress: Callable[[str], None] | None = None,
) -> list[IndexAction]:
    """Build every missing index concurrently; rebuild invalid ones; skip the rest."""
    say = progress or (lambda _msg: None)
    actions: list[IndexAction] = []
    with connection(settings, autocommit=True) as conn:
        _require_mlflow_schema(conn, settings)
        _ensure_version_table(conn)
        existing = _existing(conn)
        for spec in specs:
            start = time.monotonic()
            action = "created"
            if spec.name in existing:
                if existing[spec.name][0]:
                    actions.append(IndexAction(spec.name, "skipped", 0.0))
                    _record(conn, spec)
                    say(f"{spec.name}: already applied, skipped")
                    continue
                say(f"{spec.name}: invalid (an interrupted build), rebuilding")
                conn.execute(sqlalchemy.text(spec.drop_sql()))
                action = "rebuilt"
            say(f"{spec.name}: building on {spec.table}")
            try:
                conn.execute(sqlalchemy.text(spec.create_sql()))
                if spec.kind == "statistics":  # filled by ANALYZE, used from then on
                    conn.execute(sqlalchemy.text(f"ANALYZE {spec.table}"))
            except sqlalchemy.exc.SQLAlchemyError as exc:
                conn.execute(sqlalchemy.text(spec.drop_sql()))
                detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                raise IndexPackError(
                    f"building {spec.name} failed: {detail}",
                    fix="nothing is left half-built; fix the cause and rerun "
                    "`mlops-platform db indexes apply`",
                ) from None
            _record(conn, spec)
            actions.append(IndexAction(spec.name, action, time.monotonic() - start))
    return actions


def _record(conn: sqlalchemy.Connection, spec: IndexSpec) -> None:
    conn.execute(
        sqlalchemy.text(
            f"INSERT INTO {VERSION_TABLE} (name, pack_version, definition) "
            "VALUES (:n, :v, :d) ON CONFLICT (name) DO UPDATE SET pack_version = :v, "
            "definition = :d"
        ),
        {"n": spec.name, "v": PACK_VERSION, "d": f"ON {spec.table} {spec.definition}"},
    )


def drop_pack(
    settings: PlatformSettings,
    *,
    specs: tuple[IndexSpec, ...] = PACK,
    progress: Callable[[str], None] | None = None,
) -> list[IndexAction]:
    """Drop every index of the pack concurrently and forget it; absent ones are skipped."""
    say = progress or (lambda _msg: None)
    actions: list[IndexAction] = []
    with connection(settings, autocommit=True) as conn:
        existing = _existing(conn)
        recorded = _recorded(conn)
        for spec in specs:
            start = time.monotonic()
            if spec.name not in existing:
                actions.append(IndexAction(spec.name, "absent", 0.0))
                say(f"{spec.name}: not present, skipped")
            else:
                say(f"{spec.name}: dropping")
                conn.execute(sqlalchemy.text(spec.drop_sql()))
                actions.append(IndexAction(spec.name, "dropped", time.monotonic() - start))
            if spec.name in recorded:
                conn.execute(
                    sqlalchemy.text(f"DELETE FROM {VERSION_TABLE} WHERE name = :n"),
                    {"n": spec.name},
                )
        if not set(_recorded(conn)) - {s.name for s in specs}:
            conn.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
    return actions


ANALYZE_TABLES = (
    "experiments",
    "runs",
    "params",
    "tags",
    "metrics",
    "latest_metrics",
    "experiment_tags",
)


@dataclass(frozen=True)
class AnalyzeResult:
    tables: list[str]
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"tables": self.tables, "seconds": round(self.seconds, 2)}


def analyze(settings: PlatformSettings, *, full: bool = False) -> AnalyzeResult:
    """VACUUM ANALYZE MLflow's search tables (``full`` for the whole database)."""
    done: list[str] = []
    start = time.monotonic()
    with connection(settings, autocommit=True) as conn:
        if full:
            conn.execute(sqlalchemy.text("VACUUM ANALYZE"))
            done.append("*")
        else:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
            for table in ANALYZE_TABLES:
                if table in tables:
                    conn.execute(sqlalchemy.text(f"VACUUM ANALYZE {table}"))
                    done.append(table)
    return AnalyzeResult(done, time.monotonic() - start)
