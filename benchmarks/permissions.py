"""What permissions cost, side by side in one run (issue: identity enforced by the server).

Four targets on this machine at once, measured alternately (A B C D A B C D ...):

- the kit with permissions on (the default): nginx -> MLflow's permission engine;
- the same with the per-worker memo of users and grants off (``MLOPS_AUTH_CACHE_SECONDS=0``);
- the same kit with them off (``MLOPS_AUTH_ENABLED=false``), through its own nginx;
- a default ``mlflow server`` (as MLflow's docs start it), reached directly.

Workloads: single ``log_metric`` and 100-metric ``log_batch`` from one client, then
``experiments/search`` over 1,000 experiments by the admin and by a user who may read
10 of them (MLflow filters what a user may not read).

Besides rows/s it reports the tracking server's CPU time per request (its process and
workers, from the kernel's accounting): unlike throughput, that figure hardly moves when
other work shares the machine, so it shows what the permission checks cost even on a
busy one.

    python -m benchmarks.permissions [--seconds 3] [--rounds 3] [--output out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from typing import Any

import psutil
import requests

from benchmarks.common import throwaway_stack
from benchmarks.throughput import Target, client, measure, start_reference
from mlops_platform.stack.base import StateFile, terminate

API = "/api/2.0/mlflow"


def log(message: str) -> None:
    print(f"[permissions] {message}", file=sys.stderr, flush=True)


def up(stack: Any) -> Target:
    info = json.loads(stack.cli("up", "--json").stdout)
    password = stack.settings.proxy_password.get_secret_value()
    return Target("", info["url"], (stack.settings.proxy_user, password))


def server_pid(stack: Any) -> int:
    return int(StateFile.load(stack.settings.state_dir).services["tracking"]["pid"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process and all its workers, so far."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def writer(stack: Any) -> Target:
    """The stack's URL as an editor granted the Default experiment: every write goes
    through MLflow's grant lookup (an admin would skip it)."""
    target = up(stack)
    added = json.loads(
        stack.cli("users", "add", "writer", "--role", "editor", "--generate", "--json").stdout
    )
    stack.cli("users", "grant", "writer", "experiment", "0", "EDIT")
    return Target("", target.url, ("writer", added["generated_password"]))


def writes(
    targets: list[Target], pids: dict[str, int], seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    """Median rows/s and server CPU ms per request, per target and workload."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("log_metric", "log_batch"):
        rows: dict[str, list[float]] = {t.name: [] for t in targets}
        cpu: dict[str, list[float]] = {t.name: [] for t in targets}
        for r in range(rounds):
            for t in targets:
                before = cpu_seconds(pids[t.name])
                result = measure(1, client, [(t, kind, seconds, r)])
                used = cpu_seconds(pids[t.name]) - before
                if result["errors"]:
                    raise SystemExit(f"{t.name} {kind}: {result['errors']:.0f} errors")
                rows[t.name].append(result["rows_s"])
                requests_made = result["req_s"] * seconds
                cpu[t.name].append(1000 * used / max(requests_made, 1))
        out[kind] = {name: statistics.median(v) for name, v in rows.items()}
        out[kind + "_cpu_ms"] = {name: statistics.median(v) for name, v in cpu.items()}
        log(
            f"{kind}: "
            + ", ".join(
                f"{k} {v:,.0f} rows/s, {out[kind + '_cpu_ms'][k]:.1f} ms CPU/request"
                for k, v in out[kind].items()
            )
        )
    return out


def searches(target: Target, stack: Any, repeats: int) -> dict[str, float]:
    """1,000 experiments; a service account may read 10; both search them all."""
    admin = requests.Session()
    admin.auth = target.auth
    ids = []
    for i in range(1000):
        r = admin.post(f"{target.url}{API}/experiments/create", json={"name": f"bench-{i}"})
        r.raise_for_status()
        ids.append(r.json()["experiment_id"])
    added = json.loads(
        stack.cli("users", "add", "reader", "--role", "service", "--generate", "--json").stdout
    )
    for exp in ids[::100]:
        stack.cli("users", "grant", "reader", "experiment", exp, "READ")
    reader = requests.Session()
    reader.auth = ("reader", added["generated_password"])

    def search(session: requests.Session) -> tuple[float, int]:
        start, seen, token = time.perf_counter(), 0, None
        while True:
            body: dict[str, Any] = {"max_results": 1000}
            if token:
                body["page_token"] = token
            r = session.post(f"{target.url}{API}/experiments/search", json=body, timeout=120)
            r.raise_for_status()
            data = r.json()
            seen += len(data.get("experiments", []))
            token = data.get("next_page_token")
            if not token:
                return time.perf_counter() - start, seen

    times: dict[str, list[float]] = {"admin": [], "reader": []}
    counts = {}
    for _ in range(repeats):
        for who, session in (("admin", admin), ("reader", reader)):
            seconds, seen = search(session)
            times[who].append(seconds)
            counts[who] = seen
    if counts["reader"] != 10:
        raise SystemExit(f"the reader saw {counts['reader']} experiments, not the 10 granted")
    out = {f"{who}_ms": statistics.median(v) * 1000 for who, v in times.items()}
    out["admin_saw"] = float(counts["admin"])
    out["reader_saw"] = float(counts["reader"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--search-repeats", type=int, default=5)
    parser.add_argument("--output", "-o", dest="json_path", metavar="FILE")
    args = parser.parse_args(argv)
    with ExitStack() as stacks:
        on = stacks.enter_context(throwaway_stack(server_workers="2"))
        # The same, with the per-worker memo of users and grants off: MLflow's engine as
        # it ships, one auth-database read per check.
        bare = stacks.enter_context(throwaway_stack(server_workers="2", auth_cache_seconds="0"))
        off = stacks.enter_context(throwaway_stack(server_workers="2", auth_enabled="false"))
        log("starting the kit with permissions on (with and without the memo), then off")
        kit_on, kit_bare, kit_off = writer(on), writer(bare), up(off)
        kit_on.name, kit_bare.name = "kit, permissions on", "kit, on, no memo"
        kit_off.name = "kit, permissions off"
        ref_pid, reference, _ = start_reference(on)
        targets = [kit_on, kit_bare, kit_off, reference]
        pids = {
            kit_on.name: server_pid(on),
            kit_bare.name: server_pid(bare),
            kit_off.name: server_pid(off),
            reference.name: ref_pid,
        }
        try:
            report: dict[str, Any] = {"writes": writes(targets, pids, args.seconds, args.rounds)}
            report["search"] = searches(kit_on, on, args.search_repeats)
        finally:
            terminate(ref_pid)
    w, s = report["writes"], report["search"]
    lines = [
        "",
        "| workload | on | on, no memo | off | default mlflow | on/off | no memo/off "
        "| on/default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("log_metric", "log_batch"):
        for unit, values, form in (
            ("rows/s (1 client)", w[kind], "{:,.0f}"),
            ("server CPU ms/request", w[kind + "_cpu_ms"], "{:.1f}"),
        ):
            a, m, b, c = (values[t.name] for t in targets)
            cells = " | ".join(form.format(x) for x in (a, m, b, c))
            lines.append(f"| {kind} {unit} | {cells} | {a / b:.2f} | {m / b:.2f} | {a / c:.2f} |")
    lines += [
        "",
        "(the default server's CPU includes its background job runner)",
        f"experiments/search over 1,000: admin {s['admin_ms']:.0f} ms, a user who reads 10: "
        f"{s['reader_ms']:.0f} ms ({s['reader_ms'] / s['admin_ms']:.2f}x the admin's)",
    ]
    print("\n".join(lines))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
