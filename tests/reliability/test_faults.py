"""Faults under load: every write the server acknowledged is still there afterwards.

A workload of several client processes (`log_batch` and artifacts, MLflow's own client
with the retry settings `client-env` gives) keeps a ledger of each acknowledged write and
of each retry its HTTP layer makes. Meanwhile PostgreSQL is killed with SIGKILL, the
tracking server is restarted, the object store is down for ten seconds and nginx is
restarted; each time `mlops-platform up` brings the missing service back. The load runs
until the last fault has recovered plus a margin.

Each fault is verified, not assumed: its process is seen gone and `up` gives the service a
new pid; it falls inside the load window (every client acknowledged writes before it and
after its recovery); and at least one client felt it (a retried call, or a call in flight
across it that took seconds). A no-op fault injected the same way must fail that
verification: the test's own negative control. Then every acknowledged metric point and
every acknowledged artifact (by checksum) must be found. The figures are printed (see
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env
from tests.support.ledger import (
    KEYS,
    WORKERS,
    assert_acknowledged_writes_kept,
    ledger_load,
    read_ledgers,
    wait_for_acks,
)
from tests.support.stacks import down_later

pytestmark = pytest.mark.integration

MARGIN = 10.0  # seconds of load after the last fault has recovered
SLOWED = 2.0  # a call taking this long across a fault felt it (a normal call: ~50 ms)
RESUMED = 5  # acknowledged calls per client after a recovery before the next fault


@dataclass
class Fault:
    """What the test saw of one injected fault."""

    name: str
    service: str
    pid_before: int
    pid_after: int
    gone: bool  # the old process was seen gone (dead or a zombie)
    injected_at: float
    recovered_at: float  # `up` returned

    @property
    def restored_in_s(self) -> float:
        return round(self.recovered_at - self.injected_at, 1)


def effect(fault: Fault, ledgers: dict[int, list[dict[str, Any]]]) -> tuple[int, int]:
    """Retries made, and calls slowed across the fault, by all clients (inside its window)."""
    start, end = fault.injected_at, fault.recovered_at + 1.0
    entries = [e for es in ledgers.values() for e in es]
    retries = sum(1 for e in entries if e["kind"] == "retry" and start <= e["at"] <= end)
    slowed = sum(
        1
        for e in entries
        if "acked" in e
        and e["sent"] <= end
        and e["acked"] >= start
        and e["acked"] - e["sent"] >= SLOWED
    )
    return retries, slowed


def verify(fault: Fault, ledgers: dict[int, list[dict[str, Any]]]) -> list[str]:
    """Why ``fault`` cannot count as a fault that happened under load (empty: it did)."""
    problems = []
    if not fault.gone:
        problems.append(f"{fault.name}: pid {fault.pid_before} was never seen gone")
    if fault.pid_after == fault.pid_before:
        problems.append(f"{fault.name}: the service kept pid {fault.pid_before}")
    for i, entries in ledgers.items():
        acked = [e["acked"] for e in entries if "acked" in e]
        if not acked or min(acked) >= fault.injected_at:
            problems.append(f"{fault.name}: client {i} acknowledged nothing before it")
        if not acked or max(acked) <= fault.recovered_at:
            problems.append(f"{fault.name}: client {i} acknowledged nothing after its recovery")
    retries, slowed = effect(fault, ledgers)
    if retries + slowed == 0:
        problems.append(f"{fault.name}: no client retried or was slowed")
    return problems


@pytest.fixture(scope="module")
def stack() -> Iterator[Path]:
    require_binaries()
    root = make_stack_dir("mlops-faults-")
    env_file = write_env(root)
    result = run_cli(env_file, "up", timeout=600)
    assert result.returncode == 0, result.stderr
    try:
        yield env_file
    finally:
        down_later(env_file, remove=root)


def service_pid(env_file: Path, name: str) -> int:
    status = json.loads(run_cli(env_file, "status", "--json").stdout)
    return int(next(s["pid"] for s in status["services"] if s["name"] == name))


def signal_tree(pid: int, sig: int) -> None:
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def inject(
    env_file: Path,
    name: str,
    service: str,
    hit: Callable[[int], None],
    *,
    down_for: float = 0.0,
    gone_timeout: float = 30.0,
) -> Fault:
    """Hit the service's process, wait for it to be gone, leave it down, then `up`."""
    pid = service_pid(env_file, service)
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    injected_at = time.time()
    hit(pid)
    gone = gone_within(pid, gone_timeout)
    if gone:  # its children too (uvicorn's workers hold the port until they exit)
        assert all(gone_within(p.pid, 30) for p in tree), f"{service}'s processes outlived it"
    time.sleep(down_for)  # the outage itself, e.g. ten seconds without an object store
    result = run_cli(env_file, "up", timeout=300)
    assert result.returncode == 0, result.stderr
    recovered_at = time.time()
    return Fault(
        name, service, pid, service_pid(env_file, service), gone, injected_at, recovered_at
    )


def fault_schedule() -> list[tuple[str, str, Callable[[int], None], float]]:
    """The faults, in order: (name, service, what is done to its pid, seconds it stays down)."""
    return [
        ("kill -9 PostgreSQL, then `up`", "postgres", lambda p: os.kill(p, signal.SIGKILL), 2),
        (
            "restart the tracking server",
            "tracking",
            lambda p: signal_tree(p, signal.SIGTERM),
            0,
        ),
        (
            "object store down for 10 s",
            "seaweedfs",
            lambda p: signal_tree(p, signal.SIGKILL),
            10,
        ),
        ("restart nginx", "nginx", lambda p: signal_tree(p, signal.SIGTERM), 0),
    ]


def faults_report(
    load_start: float,
    faults: list[Fault],
    ledgers: dict[int, list[dict[str, Any]]],
    noop_problems: list[str],
    batches: list[tuple[int, dict[str, Any]]],
    artifacts: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    retries: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the run measured, printed as the FAULTS REPORT."""
    # The longest time any client waited for an acknowledgement across the faults.
    longest = max(e["acked"] - e["sent"] for _, e in batches)
    last_ack = max(e["acked"] for _, e in batches)
    return {
        "workers": WORKERS,
        "load_seconds": round(last_ack - load_start, 1),
        "acknowledged_batches": len(batches),
        "acknowledged_points": len(batches) * KEYS,
        "acknowledged_artifacts": len(artifacts),
        "client_errors": len(errors),
        "client_retries": len(retries),
        "missing_points": 0,  # asserted above
        "missing_artifacts": 0,
        "longest_ack_wait_s": round(longest, 1),
        "faults": [
            {
                **{k: v for k, v in asdict(f).items() if k in ("name", "pid_before", "pid_after")},
                "starts_at_s": round(f.injected_at - load_start, 1),
                "restored_in_s": f.restored_in_s,
                "retries, slowed calls": effect(f, ledgers),
            }
            for f in faults
        ],
        "no-op control refused for": noop_problems,
    }


def test_acknowledged_writes_survive_faults(
    stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = stack
    client_env = json.loads(run_cli(env_file, "client-env", "--json").stdout)["env"]
    for key, value in client_env.items():
        monkeypatch.setenv(key, value)
    from mlflow.tracking import MlflowClient

    # Explicit URI: another test may have set mlflow's process-wide tracking URI.
    client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment("faults-under-load")
    run_id = client.create_run(experiment).info.run_id

    faults: list[Fault] = []
    with ledger_load(client_env, run_id, tmp_path) as load_start:
        schedule = fault_schedule()
        resumed_after = load_start
        for name, service, hit, down_for in schedule:
            wait_for_acks(tmp_path, resumed_after, RESUMED)  # load is on before each fault
            faults.append(inject(env_file, name, service, hit, down_for=down_for))
            resumed_after = faults[-1].recovered_at
        # The negative control: signal 0 checks the process exists and does nothing else.
        wait_for_acks(tmp_path, resumed_after, RESUMED)
        noop = inject(
            env_file, "no-op (signal 0 to nginx)", "nginx", lambda p: os.kill(p, 0), gone_timeout=3
        )
        # the load goes on until the last fault has recovered, plus a margin
        wait_for_acks(tmp_path, max(f.recovered_at for f in faults) + MARGIN, 1)

    ledgers = read_ledgers(tmp_path)
    problems = [p for fault in faults for p in verify(fault, ledgers)]
    assert problems == [], "\n".join(problems)
    noop_problems = verify(noop, ledgers)
    assert any("never seen gone" in p for p in noop_problems), noop_problems
    assert any("kept pid" in p for p in noop_problems), noop_problems

    batches = [(i, e) for i, entries in ledgers.items() for e in entries if e["kind"] == "batch"]
    artifacts = [e for entries in ledgers.values() for e in entries if e["kind"] == "artifact"]
    errors = [e for entries in ledgers.values() for e in entries if e["kind"] == "error"]
    retries = [e for entries in ledgers.values() for e in entries if e["kind"] == "retry"]

    assert_acknowledged_writes_kept(client, run_id, batches, artifacts, tmp_path)

    report = faults_report(
        load_start, faults, ledgers, noop_problems, batches, artifacts, errors, retries
    )
    print("\nFAULTS REPORT " + json.dumps(report, indent=2))
    assert len(batches) > WORKERS * 50 and len(artifacts) >= WORKERS * 3
