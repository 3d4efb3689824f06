"""Time from `up` to healthy, and resident memory, of the local stack in its default sizing.

Brings a throwaway stack up twice (a cold start that initialises PostgreSQL, then a warm
restart on the same data), reads `status --json`, and tears it down. Loopback only.

    make bench        # or: python -m benchmarks.startup
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_platform.bootstrap import init_env_file
from tests.conftest import free_port


def cli(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    os.chmod(root, 0o755)
    env_file = root / ".env"
    init_env_file(
        env_file,
        values={
            "state_dir": str(root / "state"),
            "db_port": str(free_port()),
            "s3_port": str(free_port()),
            "server_port": str(free_port()),
            "proxy_port": str(free_port()),
        },
    )
    rows = []
    try:
        for label in ("cold (initdb)", "warm (same data)"):
            start = time.monotonic()
            cli(env_file, "up")
            seconds = time.monotonic() - start
            status = json.loads(cli(env_file, "status", "--json").stdout)
            rows.append((label, seconds, status))
            cli(env_file, "down")
    finally:
        subprocess.run(
            [sys.executable, "-m", "mlops_platform", "--env-file", str(env_file), "down"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)

    print(f"{'start':<18} {'to healthy s':>12} {'total RSS MB':>13}  per service (MB)")
    for label, seconds, status in rows:
        per = ", ".join(f"{s['name']} {s['rss_mb']}" for s in status["services"])
        print(f"{label:<18} {seconds:>12.1f} {status['total_rss_mb']:>13.0f}  {per}")
    print("aim: under 60 s and under 1500 MB on 2 cores")


if __name__ == "__main__":
    main()
