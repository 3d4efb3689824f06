"""The kit's deployment against a default `mlflow server`, side by side, in one run.

One process brings up, on loopback:

- the kit's local stack (PostgreSQL, SeaweedFS, `mlops-platform serve`, nginx with basic
  auth), reached the way users reach it: through the proxy;
- a reference `mlflow server` started as MLflow's documentation starts it (its default
  workers, job execution on), on the same PostgreSQL cluster (a database of its own)
  and the same S3 store (a prefix of its own), reached directly.

Then it measures each workload on both, alternately (A B A B ...), and PostgreSQL
itself taking the same metric rows (the physical limit):

1. start to healthy, processes and resident memory;
2. `log_metric` and 100-metric `log_batch` from 1, 4 and 16 client processes;
3. `search_runs`, listing runs and metric history on a database of ``--runs`` runs
   (default 100,000) in each server's database: template runs logged through each
   server's API, replicated in SQL; the kit's database carries its index pack;
4. one artifact of ``--artifact-mb`` (default 1024) up and down through each server
   and straight to the store.

It prints a table of medians with the ratios kit/reference and kit/limit and writes
the same figures as JSON to a file (``--output FILE``); with ``--json`` stdout carries
them as one object, ``{"ok": true, ...}``, like every `--json` of the CLI (the table
then goes to stderr). ``--quick`` is the same harness with small sizes (a minute or
two); CI runs it to keep the harness working.

    make bench                                  # the full run, under 15 minutes
    mlops-platform bench --quick --output out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import Stack, throwaway_stack
from benchmarks.harness.artifacts import artifacts
from benchmarks.harness.base import FULL, QUICK, Report, Sizes, log
from benchmarks.harness.reads import search
from benchmarks.harness.render import render
from benchmarks.harness.writes import writes
from benchmarks.throughput import Target, start_reference
from mlops_platform.stack.base import terminate

# -- 1. start-up and memory -------------------------------------------------------------


def tree_memory(pid: int) -> dict[str, float]:
    """Processes, summed RSS and summed PSS (shared pages counted once) of a process tree.

    RSS sums count PostgreSQL's shared buffers once per backend; PSS is the honest total.
    """
    root = psutil.Process(pid)
    procs, rss, pss = 0, 0, 0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            procs, rss, pss = procs + 1, rss + info.rss, pss + getattr(info, "pss", info.rss)
    return {"processes": procs, "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)}


def reference_memory(reference_pid: int) -> dict[str, Any]:
    return {"reference server": tree_memory(reference_pid)}


def kit_memory(stack: Stack) -> dict[str, Any]:
    """Every service of the kit's stack (measured once the reference server is gone, so
    PostgreSQL carries no backends of the reference's)."""
    services = {s["name"]: s for s in stack.status()["services"] if s.get("pid")}
    per = {name: tree_memory(s["pid"]) for name, s in services.items()}
    total = {
        k: round(sum(m[k] for m in per.values()), 1) for k in ("processes", "rss_mb", "pss_mb")
    }
    return {"kit stack": total, **{f"kit {name}": m for name, m in per.items()}}


# -- the run ----------------------------------------------------------------------------


# nginx's per-address limit (MLOPS_PROXY_RATE_LIMIT: 300 requests/s and a burst of 600 by
# default) sees every client of the harness as one address, 127.0.0.1: at 4 clients the
# kit's `log_metric` outran it, and from then on the limit's 429s, not the server, set the
# rate. The harness measures the servers, so the limit is raised out of the way (a --set
# of proxy_rate_limit wins); the report's settings show it.
HARNESS_VALUES = {"proxy_rate_limit": "100000"}


def run(sizes: Sizes, *, skip: set[str], values: dict[str, str] | None = None) -> Report:
    values = {**HARNESS_VALUES, **(values or {})}
    report = Report(
        sizes=asdict(sizes),
        settings=dict(values),
        machine={"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
    )
    started = time.monotonic()
    with throwaway_stack(**values) as stack:
        log("starting the kit's stack")
        t0 = time.monotonic()
        stack.cli("up")
        report.startup["kit stack"] = {"seconds_to_healthy": round(time.monotonic() - t0, 1)}
        report.memory_at_start.update(kit_memory(stack))
        s = stack.settings
        kit = Target(
            "kit", s.resolved_public_url, (s.proxy_user, s.proxy_password.get_secret_value())
        )
        log("starting the reference mlflow server")
        ref_pid, reference, ref_start = start_reference(stack)
        report.startup["reference server"] = {"seconds_to_healthy": round(ref_start, 1)}
        report.memory_at_start.update(reference_memory(ref_pid))
        try:
            if "writes" not in skip:
                writes(stack, kit, reference, sizes, report)
            if "search" not in skip:
                search(stack, kit, reference, sizes, report)
            if "artifacts" not in skip:
                artifacts(stack, kit, reference, sizes, report)
            report.memory.update(reference_memory(ref_pid))
        finally:
            terminate(ref_pid)
        time.sleep(2)  # the reference's PostgreSQL backends exit
        report.memory.update(kit_memory(stack))
    report.seconds = round(time.monotonic() - started, 1)
    return report


class Parser(argparse.ArgumentParser):
    as_json = False  # --json given: a refusal is also the one JSON object, as in the CLI

    def error(self, message: str) -> Any:  # one line, exit 2, like the rest of the CLI
        line = f"{message} (see `{self.prog} --help`)"
        print(f"error: {line}", file=sys.stderr)
        if self.as_json:
            print(json.dumps({"ok": False, "error": line}, indent=2))
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="mlops-platform bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument(
        "--json", action="store_true", help='print the figures as one JSON object: {"ok": ...}'
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="also write the figures here as JSON"
    )
    parser.add_argument("--clients", help="client process counts, e.g. 1,4,16")
    parser.add_argument("--runs", type=int, help="runs in each database for the reads")
    parser.add_argument("--artifact-mb", type=int, help="size of the artifact")
    parser.add_argument("--rounds", type=int, help="A/B alternations")
    parser.add_argument("--skip", default="", help="comma list of: writes, search, artifacts")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the kit's stack for this run, e.g. server_workers=4 (repeatable)",
    )
    given = sys.argv[1:] if argv is None else argv
    parser.as_json = "--json" in (given[: given.index("--")] if "--" in given else given)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.clients:
        overrides["clients"] = tuple(int(c) for c in args.clients.split(","))
    for name in ("runs", "artifact_mb", "rounds"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    sizes = Sizes(**{**asdict(sizes), **overrides})
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - {"writes", "search", "artifacts"}
    if unknown:
        parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
    values = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set {item!r}: expected NAME=VALUE, e.g. server_workers=4")
        values[name.lower().removeprefix("mlops_")] = value
    report = run(sizes, skip=skip, values=values)
    print(render(report), file=sys.stderr if args.json else sys.stdout)
    figures = asdict(report)
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.output}")
    if args.json:
        print(json.dumps({"ok": True, **figures}, indent=2))
    return 0
