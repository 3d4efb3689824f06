"""Databases as an older MLflow left them: migrated with MLflow's own Alembic scripts."""

from __future__ import annotations

import sqlalchemy

from mlops_platform import db
from mlops_platform.settings import PlatformSettings

# The schema head of MLflow 3.16.0, the minor release before the kit's 3.17: read from
# its wheel (mlflow/store/db_migrations/versions). Migrating a database with today's
# Alembic scripts up to it yields exactly the schema MLflow 3.16 created.
PREVIOUS_MINOR_HEAD = "b7e2c1a4d9f3"


def mlflow_revisions() -> list[str]:
    """MLflow's schema revisions, newest first."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    return [r.revision for r in script.walk_revisions()]


def migrate_to(settings: PlatformSettings, revision: str, *, experiment: str | None = None) -> None:
    """The empty database of SETTINGS as MLflow left it at REVISION; with EXPERIMENT, an
    active experiment 7 of that name in it."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = db.make_engine(settings)
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(settings.database_url(with_password=True))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    if experiment is not None:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, "
                    "lifecycle_stage) VALUES (7, :name, 's3://x/7', 'active')"
                ),
                {"name": experiment},
            )
    engine.dispose()
