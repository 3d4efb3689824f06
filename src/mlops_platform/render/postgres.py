"""PostgreSQL server settings for MLflow's workload, shared by the local stack and compose."""

from __future__ import annotations

from mlops_platform.settings import PlatformSettings

# Durability is not negotiable: fsync, synchronous_commit and full_page_writes keep their
# defaults, so every write MLflow acknowledged survives a crash (tests/reliability).
_TUNING = {
    # Runs, params, tags and latest metrics of a busy server fit in memory.
    "shared_buffers": "256MB",
    "effective_cache_size": "1GB",
    # search_runs sorts and hashes runs joined with latest_metrics, params and tags.
    "work_mem": "16MB",
    # CREATE INDEX CONCURRENTLY of the index pack, VACUUM ANALYZE.
    "maintenance_work_mem": "128MB",
    # Local SSDs and cloud volumes: random reads cost little more than sequential ones,
    # so the planner picks the pack's indexes where they pay.
    "random_page_cost": "1.1",
    # Metric bursts write much WAL: fewer, smoother checkpoints, compressed full pages.
    "max_wal_size": "2GB",
    "wal_compression": "on",
    "checkpoint_completion_target": "0.9",
}


def server_options(settings: PlatformSettings) -> dict[str, str]:
    """``-c name=value`` settings the kit starts PostgreSQL with."""
    return {"max_connections": str(settings.db_max_connections), **_TUNING}
