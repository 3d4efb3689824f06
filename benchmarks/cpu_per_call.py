"""Where the CPU of one write call goes, process by process: the kit beside `mlflow server`.

The harness reports rates; on a machine whose cores the clients share with the servers,
a rate is the CPU per call. This measures that CPU directly: the kit's stack and a
default ``mlflow server`` (the harness's reference) on one machine, N client processes
(the harness's client) logging single metrics (or 100-metric batches) for a few
seconds against each in turn, A B A B; for each measurement the user + system CPU of
every process of each group (the tracking server and all its children, every PostgreSQL
process, every nginx process, the clients) divided by the calls answered. Processes
that started during a measurement count in full. The first round is the reference's
warm-up (its job runner's consumers start), so read the later ones.

    python -m benchmarks.cpu_per_call [--clients 4] [--kind log_metric] [--seconds 5]
                                      [--rounds 3] [--json]

docs/performance.md ("What one `log_metric` call costs") has a run and what it says about
the `log_metric` goal of issue 18.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import psutil

from benchmarks.common import throwaway_stack
from benchmarks.harness import HARNESS_VALUES
from benchmarks.permissions import server_pid
from benchmarks.throughput import Target, client, measure, start_reference
from mlops_platform.stack.base import terminate

GROUPS = ("tracking server", "postgres", "nginx")


def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[process.pid] = times.user + times.system
    return out


def _snapshot(server_pid: int) -> dict[str, dict[int, float]]:
    root = psutil.Process(server_pid)
    named = list(psutil.process_iter(["name"]))
    return {
        "tracking server": _cpu([root, *root.children(recursive=True)]),
        "postgres": _cpu([p for p in named if "postgres" in (p.info["name"] or "")]),
        "nginx": _cpu([p for p in named if "nginx" in (p.info["name"] or "")]),
    }


def one(target: Target, server_pid: int, kind: str, clients: int, seconds: float) -> dict[str, Any]:
    """One measurement: the rate, and the CPU per call of each group, in ms."""
    before, children = _snapshot(server_pid), os.times()
    rates = measure(clients, client, [(target, kind, seconds, i) for i in range(clients)])
    after, children_after = _snapshot(server_pid), os.times()
    calls = rates["req_s"] * seconds
    used = {
        group: sum(cpu - before[group].get(pid, 0.0) for pid, cpu in after[group].items())
        for group in GROUPS
    }
    used["clients"] = (children_after.children_user + children_after.children_system) - (
        children.children_user + children.children_system
    )
    per_call = {group: round(cpu / calls * 1000, 3) for group, cpu in used.items()}
    return {
        "server": target.name,
        "calls_s": round(rates["req_s"], 1),
        "errors": int(rates["errors"]),
        "cpu_ms_per_call": {**per_call, "all": round(sum(per_call.values()), 3)},
    }


def run(clients: int, kind: str, seconds: float, rounds: int) -> list[dict[str, Any]]:
    # the harness's settings: nginx's per-address limit out of the way of the clients
    with throwaway_stack(**HARNESS_VALUES) as stack:
        stack.cli("up")
        s = stack.settings
        password = s.proxy_password.get_secret_value()
        kit = Target("kit", s.resolved_public_url, (s.proxy_user, password))
        kit_pid = server_pid(stack)
        reference_pid, reference, _ = start_reference(stack)
        try:
            return [
                {"round": n + 1, **one(target, pid, kind, clients, seconds)}
                for n in range(rounds)
                for target, pid in ((reference, reference_pid), (kit, kit_pid))
            ]
        finally:
            terminate(reference_pid)


def table(rows: list[dict[str, Any]]) -> str:
    names = [*GROUPS, "clients", "all"]
    lines = [
        "| round | server | calls/s | errors | " + " | ".join(f"{n} ms" for n in names) + " |",
        "|---" * (4 + len(names)) + "|",
    ]
    for row in rows:
        cpu = row["cpu_ms_per_call"]
        cells = [row["round"], row["server"], row["calls_s"], row["errors"]]
        lines.append("| " + " | ".join(str(c) for c in [*cells, *(cpu[n] for n in names)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kind", choices=("log_metric", "log_batch"), default="log_metric")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = run(args.clients, args.kind, args.seconds, args.rounds)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
