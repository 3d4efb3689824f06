"""Time from `up` to healthy, and resident memory, of the local stack in its default sizing;
and how long `doctor` takes on the healthy stack.

Brings a throwaway stack up twice (a cold start that initialises PostgreSQL, then a warm
restart on the same data), reads `status --json`, times `doctor --json`, and tears it
down. Loopback only.

    make bench        # or: python -m benchmarks.startup
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks.common import Stack, throwaway_stack


def time_doctor(stack: Stack) -> tuple[float, float, int]:
    """Wall seconds of `doctor --json`, the seconds it reports, and its exit code."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "--env-file", str(stack.env_file)]
        + ["doctor", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wall = time.monotonic() - start
    return wall, float(json.loads(result.stdout)["seconds"]), result.returncode


def main() -> None:
    rows = []
    with throwaway_stack() as stack:
        for label in ("cold (initdb)", "warm (same data)"):
            start = time.monotonic()
            stack.cli("up")
            seconds = time.monotonic() - start
            rows.append((label, seconds, stack.status()))
            doctor = time_doctor(stack)
            stack.cli("down")

    print(f"{'start':<18} {'to healthy s':>12} {'total RSS MB':>13}  per service (MB)")
    for label, seconds, status in rows:
        per = ", ".join(f"{s['name']} {s['rss_mb']}" for s in status["services"])
        print(f"{label:<18} {seconds:>12.1f} {status['total_rss_mb']:>13.0f}  {per}")
    print("aim: under 60 s and under 1500 MB on 2 cores")
    wall, reported, code = doctor
    print(
        f"doctor on the healthy stack: {wall:.1f} s wall, {reported:.1f} s in checks, exit {code}"
    )
    print("aim: checks under 5 s, the command under 15 s")


if __name__ == "__main__":
    main()
