"""The ledger workload: client processes that write through MLflow's client and write down
every acknowledged write and every retry, and the check that every acknowledged write is
still there (tests/reliability/test_faults.py, test_rolling_restart.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORKERS = 3
KEYS = 5
ARTIFACT_EVERY = 8
HARD_STOP = 900.0  # the workers stop by then whatever happens


class RetryLog(logging.Handler):
    """Writes every retry of urllib3 (MLflow's HTTP layer) to the client's ledger."""

    def __init__(self, ledger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ledger = ledger

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Retry", "Retrying")):
            entry = {"kind": "retry", "at": time.time(), "msg": message[:200]}
            self.ledger.write(json.dumps(entry) + "\n")


def worker(env: dict[str, str], run_id: str, idx: int, stop: Any, folder: str) -> None:
    """One client process; appends every acknowledged write and every retry to its ledger."""
    os.environ.update(env)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    ledger_path = Path(folder) / f"ledger-{idx}.jsonl"
    hard_stop = time.time() + HARD_STOP
    step = 0
    with open(ledger_path, "w") as ledger:
        pool_log = logging.getLogger("urllib3.connectionpool")
        pool_log.setLevel(logging.DEBUG)
        pool_log.addHandler(RetryLog(ledger))

        def record(entry: dict[str, Any]) -> None:
            ledger.write(json.dumps(entry) + "\n")
            ledger.flush()

        while not stop.is_set() and time.time() < hard_stop:
            step += 1
            ts = int(time.time() * 1000)
            metrics = [Metric(f"w{idx}_k{j}", float(step * 10 + j), ts, step) for j in range(KEYS)]
            sent = time.time()
            try:
                client.log_batch(run_id, metrics=metrics)
                record({"kind": "batch", "step": step, "sent": sent, "acked": time.time()})
            except Exception as exc:  # noqa: BLE001 - a refused write is recorded, not acked
                record({"kind": "error", "step": step, "sent": sent, "error": str(exc)[:200]})
            if step % ARTIFACT_EVERY == 0:
                path = Path(folder) / f"w{idx}-{step}.bin"
                path.write_bytes(os.urandom(64 * 1024))
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                sent = time.time()
                try:
                    client.log_artifact(run_id, str(path), artifact_path=f"w{idx}")
                    record(
                        {
                            "kind": "artifact",
                            "name": path.name,
                            "sha256": digest,
                            "sent": sent,
                            "acked": time.time(),
                        }
                    )
                except Exception as exc:  # noqa: BLE001
                    record({"kind": "error", "artifact": path.name, "error": str(exc)[:200]})
            time.sleep(0.05)


def read_ledgers(folder: Path) -> dict[int, list[dict[str, Any]]]:
    ledgers = {}
    for i in range(WORKERS):
        path = folder / f"ledger-{i}.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        # a line being written right now may be incomplete
        ledgers[i] = [json.loads(line) for line in lines if line.endswith("}")]
    return ledgers


def wait_for_acks(folder: Path, after: float, count: int, timeout: float = 180) -> None:
    """Poll until every client has `count` calls acknowledged after time `after`."""
    deadline = time.monotonic() + timeout
    while True:
        acked = {
            i: sum(1 for e in entries if e.get("acked", 0) > after)
            for i, entries in read_ledgers(folder).items()
        }
        if all(n >= count for n in acked.values()):
            return
        assert time.monotonic() < deadline, f"clients did not resume within {timeout} s: {acked}"
        time.sleep(0.2)


def assert_acknowledged_writes_kept(
    client: Any, run_id: str, batches: list[Any], artifacts: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Every acknowledged metric point is in the database; every acknowledged artifact is
    in the store, byte for byte."""
    missing = 0
    for i in range(WORKERS):
        acked_steps = {e["step"] for w, e in batches if w == i}
        for j in range(KEYS):
            stored = {(m.step, m.value) for m in client.get_metric_history(run_id, f"w{i}_k{j}")}
            missing += sum((s, float(s * 10 + j)) not in stored for s in acked_steps)
    assert missing == 0, f"{missing} acknowledged metric points are missing"
    for art in artifacts:
        worker_dir = art["name"].split("-")[0]
        local = client.download_artifacts(
            run_id, f"{worker_dir}/{art['name']}", dst_path=str(tmp_path / "down")
        )
        assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == art["sha256"]


@contextmanager
def ledger_load(client_env: dict[str, str], run_id: str, folder: Path) -> Iterator[float]:
    """WORKERS client processes write to RUN_ID, each keeping its ledger in FOLDER, until the
    block ends; yields when they started. Every worker must then exit cleanly."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    procs = [
        ctx.Process(target=worker, args=(client_env, run_id, i, stop, str(folder)))
        for i in range(WORKERS)
    ]
    load_start = time.time()
    for proc in procs:
        proc.start()
    try:
        yield load_start
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * WORKERS
