"""MLflow stores a test opens on the platform's PostgreSQL, closed again."""

from __future__ import annotations

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore


def dispose(store: SqlAlchemyStore) -> None:
    """Close the store's connections and forget its engine: MLflow keeps one engine per
    URI for the whole process, which would hold a database a test then drops."""
    engine = SqlAlchemyStore._engine_map.pop(store.db_uri, None)
    if engine is not None:
        engine.dispose()
