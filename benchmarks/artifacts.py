"""Artifact transfer: through the kit's proxy (nginx -> tracking server -> S3) against
straight to the object store, and a local-disk copy as the upper bound, side by side.

    python -m benchmarks.artifacts --size-mb 1024 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from typing import Any

from benchmarks.common import throwaway_stack
from mlops_platform import s3
from mlops_platform.render.server import client_env


def timed(action: Any, *args: Any) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the test file")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the three paths")
    args = parser.parse_args()

    with throwaway_stack() as stack:
        stack.cli("up")
        settings = stack.settings
        os.environ.update(client_env(settings))
        import mlflow

        client = mlflow.MlflowClient()
        run_id = client.create_run("0").info.run_id
        store = s3.client(settings, timeout=300)
        work = stack.root / "work"
        work.mkdir()
        source = work / "payload.bin"
        with open(source, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(1 << 20))
        times: dict[str, list[float]] = {}
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
            key = f"bench/{round_no}/payload.bin"
            down = work / f"down-{round_no}"
            down.mkdir()
            times.setdefault("proxy up", []).append(
                timed(client.log_artifact, run_id, str(source), f"r{round_no}")
            )
            times.setdefault("proxy down", []).append(
                timed(client.download_artifacts, run_id, f"r{round_no}/payload.bin", str(down))
            )
            shutil.rmtree(down)
            down.mkdir()
            times.setdefault("s3 up", []).append(
                timed(store.upload_file, str(source), settings.s3_bucket, key)
            )
            times.setdefault("s3 down", []).append(
                timed(store.download_file, settings.s3_bucket, key, str(down / "p.bin"))
            )
            times.setdefault("disk copy", []).append(
                timed(shutil.copyfile, source, down / "copy.bin")
            )
            shutil.rmtree(down)

    def rate(name: str) -> float:
        return args.size_mb / statistics.median(times[name])

    print(f"\n{args.size_mb} MB file, medians of {args.rounds} alternating rounds")
    print(f"{'path':<12} {'MB/s':>8} {'vs straight to S3':>18} {'vs disk copy':>13}")
    for name in ("proxy up", "s3 up", "proxy down", "s3 down", "disk copy"):
        direction = name.split()[-1]
        base = rate(f"s3 {direction}") if direction in ("up", "down") else rate(name)
        print(
            f"{name:<12} {rate(name):>8.0f} {rate(name) / base:>17.2f}x "
            f"{rate(name) / rate('disk copy'):>12.2f}x"
        )


if __name__ == "__main__":
    main()
