"""`backup create` against a plain `pg_dump -Fc` plus a plain copy of the bucket, side by side.

1. Bring up a throwaway local stack.
2. Populate it: template runs through the real API replicated in SQL to ``--runs`` runs
   (benchmarks/indexes.py), and ``--artifact-mb`` of artifacts under real run IDs
   (a few large files and many small ones, written with boto3).
3. Measure, alternating, ``--repeat`` times each:
   - plain: ``pg_dump -Fc`` to a file, then every object under the prefix downloaded
     with boto3 by a pool of ``backup_workers`` threads (what a cron script with
     ``aws s3 sync`` into an empty folder does);
   - kit, full: ``backup create --full`` (snapshot, dump, selection, copy with sha256,
     manifest);
   - kit, nightly: ``backup create`` with nothing changed (incremental: hard links).
4. Print the times, the ratios, and the time of ``backup verify`` (checksums + the dump
   restored into a throwaway PostgreSQL).

    python -m benchmarks.backup                                 # 100k runs, 1 GB
    python -m benchmarks.backup --runs 20000 --artifact-mb 200  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy

from benchmarks.common import throwaway_stack
from benchmarks.indexes import populate
from mlops_platform import backup, db, s3
from mlops_platform.settings import PlatformSettings

# name -> one dict of seconds (total, dump, copy) a measurement
Figures = dict[str, list[dict[str, float]]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def put_artifacts(settings: PlatformSettings, total_mb: int) -> tuple[int, int]:
    """``total_mb`` of artifacts under real runs: half in 4 large files, half in 256 kB
    files. Returns (objects, bytes)."""
    engine = db.make_engine(settings)
    with engine.connect() as conn:
        runs = conn.execute(
            sqlalchemy.text(
                "SELECT experiment_id, run_uuid FROM runs WHERE lifecycle_stage = 'active' "
                "ORDER BY start_time DESC LIMIT 400"
            )
        ).all()
    engine.dispose()
    client = s3.client(settings, timeout=120)
    large = max(1, total_mb // 8)  # 4 files of total/8 MB
    small_kb = 256
    n_small = (total_mb * 1024 // 2) // small_kb
    jobs: list[tuple[str, int]] = []
    for i in range(4):
        exp, run = runs[i % len(runs)]
        jobs.append(
            (f"{settings.s3_prefix}/{exp}/{run}/artifacts/model/weights-{i}.bin", large << 20)
        )
    for i in range(n_small):
        exp, run = runs[(i * 7) % len(runs)]
        jobs.append(
            (f"{settings.s3_prefix}/{exp}/{run}/artifacts/plots/p-{i:05d}.png", small_kb << 10)
        )

    def put(job: tuple[str, int]) -> None:
        key, size = job
        with tempfile.TemporaryFile() as f:
            f.write(os.urandom(size))
            f.seek(0)
            client.upload_fileobj(f, settings.s3_bucket, key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, jobs))
    return len(jobs), sum(size for _, size in jobs)


def plain(settings: PlatformSettings, dest: Path) -> dict[str, float]:
    """``pg_dump -Fc`` then a plain parallel download of every object."""
    dest.mkdir(parents=True)
    start = time.monotonic()
    pg_dump = db.client_binary(settings, "pg_dump", server_version=None)
    subprocess.run(
        [
            pg_dump,
            "-Fc",
            "--no-password",
            *db.conn_args(settings),
            "-f",
            str(dest / "db.dump"),
            str(settings.db_parts()["name"]),
        ],
        env=db.client_env(settings),
        check=True,
    )
    dumped = time.monotonic()
    client = s3.client(settings, timeout=120)
    keys = [
        str(o["Key"]) for o in s3.iter_objects(client, settings.s3_bucket, settings.s3_prefix + "/")
    ]

    def get(key: str) -> None:
        target = dest / "objects" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(settings.s3_bucket, key, str(target))

    with ThreadPoolExecutor(settings.backup_workers) as pool:
        list(pool.map(get, keys))
    end = time.monotonic()
    return {"total": end - start, "dump": dumped - start, "copy": end - dumped}


def kit(settings: PlatformSettings, *, full: bool) -> dict[str, float]:
    start = time.monotonic()
    result = backup.create_backup(settings, full=full)
    return {
        "total": time.monotonic() - start,
        "dump": result.dump_seconds,
        "copy": result.copy_seconds,
        "copied": float(result.manifest.copied),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the database")
    parser.add_argument("--artifact-mb", type=int, default=1024, help="MB of artifacts")
    parser.add_argument("--repeat", type=int, default=2, help="measurements of each")
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the figures here",
    )
    return parser.parse_args(argv)


def database_size(settings: PlatformSettings) -> tuple[Any, Any]:
    """(runs in the database, its size in bytes)."""
    engine = db.make_engine(settings)
    with engine.connect() as conn:
        runs = conn.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar()
        db_bytes = conn.execute(
            sqlalchemy.text("SELECT pg_database_size(current_database())")
        ).scalar()
    engine.dispose()
    return runs, db_bytes


def measure(settings: PlatformSettings, scratch: Path, repeat: int) -> Figures:
    """``repeat`` rounds of the plain backup, the kit's full one and its nightly one."""
    figures: Figures = {"plain": [], "full": [], "nightly": []}
    for i in range(repeat):
        shutil.rmtree(scratch, ignore_errors=True)
        figures["plain"].append(plain(settings, scratch))
        log(f"plain #{i + 1}: {figures['plain'][-1]['total']:.1f}s")
        figures["full"].append(kit(settings, full=True))
        log(f"kit full #{i + 1}: {figures['full'][-1]['total']:.1f}s")
        figures["nightly"].append(kit(settings, full=False))
        log(f"kit nightly #{i + 1}: {figures['nightly'][-1]['total']:.1f}s")
    shutil.rmtree(scratch, ignore_errors=True)
    return figures


def print_table(summary: dict[str, Any], repeat: int) -> None:
    figures: Figures = summary["figures"]

    def med(name: str, part: str) -> float:
        return statistics.median(f[part] for f in figures[name])

    rows: list[tuple[str, float, float, float]] = [
        (label, med(name, "total"), med(name, "dump"), med(name, "copy"))
        for label, name in (
            ("plain pg_dump -Fc + boto3 copy", "plain"),
            ("backup create --full", "full"),
            ("backup create (nightly, unchanged)", "nightly"),
        )
    ]
    size = summary["artifact_bytes"]
    print(
        f"\n{summary['runs']} runs (database {int(summary['database_bytes'] or 0) / 2**20:.0f} "
        f"MB, dump {summary['dump_bytes'] / 2**20:.0f} MB), {summary['objects']} artifacts "
        f"({size / 2**20:.0f} MB); median of {repeat}\n"
    )
    print(f"{'':38} {'total s':>8} {'dump s':>8} {'copy s':>8} {'vs plain':>9}")
    for name, total, dump, copy in rows:
        print(f"{name:38} {total:8.1f} {dump:8.1f} {copy:8.1f} {total / rows[0][1]:8.2f}x")
    print(f"{'backup verify (checksums + restore)':38} {summary['verify_seconds']:8.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with throwaway_stack(server_workers="1") as stack:
        log("starting a throwaway stack")
        stack.cli("up")
        settings = stack.settings
        populate(settings, args.runs)
        start = time.monotonic()
        objects, size = put_artifacts(settings, args.artifact_mb)
        log(f"wrote {objects} objects, {size / 2**20:.0f} MB in {time.monotonic() - start:.0f}s")
        runs, db_bytes = database_size(settings)
        figures = measure(settings, stack.root / "plain", args.repeat)
        start = time.monotonic()
        verified = backup.verify_backup(settings, "latest")
        verify_s = time.monotonic() - start
        assert verified.ok, verified.problems
        dumps = sorted(backup.backup_root(settings).glob("*/database.dump"))
        dump_bytes = dumps[-1].stat().st_size if dumps else 0
    summary = {
        "runs": runs,
        "database_bytes": db_bytes,
        "dump_bytes": dump_bytes,
        "objects": objects,
        "artifact_bytes": size,
        "figures": figures,
        "verify_seconds": verify_s,
    }
    print_table(summary, args.repeat)
    if args.output:
        args.output.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
