"""mlops-platform: run your own MLflow with PostgreSQL, S3 artifacts and an auth proxy."""

__version__ = "0.1.0"
