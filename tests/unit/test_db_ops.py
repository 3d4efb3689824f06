"""Pure parts of the database operations: no process, no database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_platform import db, indexes
from mlops_platform.settings import PlatformSettings

PASSWORD = "db-secret-value-1234"


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(db_password=PASSWORD, db_port=5433)


def test_password_travels_in_pgpassword_never_in_argv(settings: PlatformSettings) -> None:
    assert db.client_env(settings)["PGPASSWORD"] == PASSWORD
    assert PASSWORD not in " ".join(db.conn_args(settings))
    command = db.restore_command(settings, Path("/dumps/mlflow.dump"))
    assert PASSWORD not in command
    assert "pg_restore --clean --if-exists" in command and "-p 5433" in command
    assert PASSWORD not in " ".join(db.upgrade_argv(settings))


def test_pending_migrations_count_from_an_older_revision() -> None:
    script = db.script_directory()
    revisions = [r.revision for r in script.walk_revisions()]
    assert db.pending_migrations(revisions[0]) == []
    pending = db.pending_migrations(revisions[3])
    assert [m.revision for m in pending] == list(reversed(revisions[:3]))
    assert db.pending_migrations("ffffffffffff") == []


def test_settings_with_dump_dir_and_index_flag(settings: PlatformSettings) -> None:
    # The index pack is on by default: it pays off (docs/indexes.md).
    assert settings.db_dump_dir is None and settings.db_apply_indexes is True


def test_no_btree_over_a_long_text_column() -> None:
    """A btree over params/tags.value (varchar 8000) breaks long writes: hash only."""
    for spec in indexes.PACK + indexes.CANDIDATES_REJECTED:
        assert spec.name.startswith("mlops_")
        if spec.kind == "statistics":  # planner statistics: no per-row entries, no size limit
            assert spec.create_sql().startswith("CREATE STATISTICS IF NOT EXISTS")
            assert spec.drop_sql() == f"DROP STATISTICS IF EXISTS {spec.name}"
            continue
        if spec.table in ("params", "tags") and "value" in spec.definition:
            assert "USING hash" in spec.definition, spec.name
        assert "CONCURRENTLY IF NOT EXISTS" in spec.create_sql()


def test_pack_is_versioned_and_named_uniquely() -> None:
    names = [s.name for s in indexes.PACK]
    assert len(names) == len(set(names)) and indexes.PACK_VERSION >= 1
    assert indexes.VERSION_TABLE != "alembic_version"
