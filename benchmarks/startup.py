"""Time from `up` to healthy, and resident memory, of the local stack in its default sizing.

Brings a throwaway stack up twice (a cold start that initialises PostgreSQL, then a warm
restart on the same data), reads `status --json`, and tears it down. Loopback only.

    make bench        # or: python -m benchmarks.startup
"""

from __future__ import annotations

import time

from benchmarks.common import throwaway_stack


def main() -> None:
    rows = []
    with throwaway_stack() as stack:
        for label in ("cold (initdb)", "warm (same data)"):
            start = time.monotonic()
            stack.cli("up")
            seconds = time.monotonic() - start
            rows.append((label, seconds, stack.status()))
            stack.cli("down")

    print(f"{'start':<18} {'to healthy s':>12} {'total RSS MB':>13}  per service (MB)")
    for label, seconds, status in rows:
        per = ", ".join(f"{s['name']} {s['rss_mb']}" for s in status["services"])
        print(f"{label:<18} {seconds:>12.1f} {status['total_rss_mb']:>13.0f}  {per}")
    print("aim: under 60 s and under 1500 MB on 2 cores")


if __name__ == "__main__":
    main()
