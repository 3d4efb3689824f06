"""Faults under load: every write the server acknowledged is still there afterwards.

A bounded workload (several client processes, `log_batch` and artifacts, MLflow's own
client with the retry settings `client-env` gives) keeps a ledger of each acknowledged
write. Meanwhile PostgreSQL is killed with SIGKILL, the tracking server is restarted,
the object store is down for ten seconds and nginx is restarted; each time
`mlops-platform up` brings the missing service back. Then every acknowledged metric
point and every acknowledged artifact (by checksum) must be found. The figures are
printed and written to the pytest report (see docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env

pytestmark = pytest.mark.integration

WORKERS = 3
KEYS = 5
ARTIFACT_EVERY = 8
DURATION = 75.0


def worker(env: dict[str, str], run_id: str, idx: int, stop_at: float, folder: str) -> None:
    """One client process; appends every acknowledged write to its ledger file."""
    os.environ.update(env)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    ledger_path = Path(folder) / f"ledger-{idx}.jsonl"
    step = 0
    with open(ledger_path, "w") as ledger:
        while time.time() < stop_at:
            step += 1
            ts = int(time.time() * 1000)
            metrics = [Metric(f"w{idx}_k{j}", float(step * 10 + j), ts, step) for j in range(KEYS)]
            sent = time.time()
            try:
                client.log_batch(run_id, metrics=metrics)
                ledger.write(
                    json.dumps({"kind": "batch", "step": step, "sent": sent, "acked": time.time()})
                    + "\n"
                )
            except Exception as exc:  # noqa: BLE001 - a refused write is recorded, not acked
                ledger.write(
                    json.dumps(
                        {"kind": "error", "step": step, "sent": sent, "error": str(exc)[:200]}
                    )
                    + "\n"
                )
            if step % ARTIFACT_EVERY == 0:
                path = Path(folder) / f"w{idx}-{step}.bin"
                path.write_bytes(os.urandom(64 * 1024))
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                sent = time.time()
                try:
                    client.log_artifact(run_id, str(path), artifact_path=f"w{idx}")
                    ledger.write(
                        json.dumps(
                            {
                                "kind": "artifact",
                                "name": path.name,
                                "sha256": digest,
                                "sent": sent,
                                "acked": time.time(),
                            }
                        )
                        + "\n"
                    )
                except Exception as exc:  # noqa: BLE001
                    ledger.write(
                        json.dumps(
                            {"kind": "error", "artifact": path.name, "error": str(exc)[:200]}
                        )
                        + "\n"
                    )
            ledger.flush()
            time.sleep(0.05)


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
        run_cli(env_file, "down")
        if os.environ.get("MLOPS_TEST_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


def service_pid(env_file: Path, name: str) -> int:
    status = json.loads(run_cli(env_file, "status", "--json").stdout)
    return int(next(s["pid"] for s in status["services"] if s["name"] == name))


def kill_tree(pid: int, sig: int) -> None:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def bring_back(env_file: Path) -> float:
    start = time.monotonic()
    result = run_cli(env_file, "up", timeout=300)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - start


def test_acknowledged_writes_survive_faults(
    stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = stack
    client_env = json.loads(run_cli(env_file, "client-env", "--json").stdout)
    for key, value in client_env.items():
        monkeypatch.setenv(key, value)
    from mlflow.tracking import MlflowClient

    # Explicit URI: another test may have set mlflow's process-wide tracking URI.
    client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment("faults-under-load")
    run_id = client.create_run(experiment).info.run_id

    stop_at = time.time() + DURATION
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=worker, args=(client_env, run_id, i, stop_at, str(tmp_path)))
        for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()

    faults: list[dict[str, float | str]] = []

    def inject(name: str, action) -> None:  # type: ignore[no-untyped-def]
        at = time.time()
        action()
        faults.append({"fault": name, "at": at, "restored_in_s": round(time.time() - at, 1)})

    time.sleep(8)
    inject(
        "kill -9 PostgreSQL, then `up`",
        lambda: (
            os.kill(service_pid(env_file, "postgres"), signal.SIGKILL),
            time.sleep(2),
            bring_back(env_file),
        ),
    )
    time.sleep(8)
    inject(
        "restart the tracking server",
        lambda: (
            kill_tree(service_pid(env_file, "tracking"), signal.SIGTERM),
            bring_back(env_file),
        ),
    )
    time.sleep(8)
    inject(
        "object store down for 10 s",
        lambda: (
            kill_tree(service_pid(env_file, "seaweedfs"), signal.SIGKILL),
            time.sleep(10),
            bring_back(env_file),
        ),
    )
    time.sleep(8)
    inject(
        "restart nginx",
        lambda: (kill_tree(service_pid(env_file, "nginx"), signal.SIGTERM), bring_back(env_file)),
    )

    for proc in procs:
        proc.join(timeout=DURATION + 300)
        assert proc.exitcode == 0

    ledgers = {
        i: [json.loads(line) for line in (tmp_path / f"ledger-{i}.jsonl").read_text().splitlines()]
        for i in range(WORKERS)
    }
    batches = [(i, e) for i, entries in ledgers.items() for e in entries if e["kind"] == "batch"]
    artifacts = [e for entries in ledgers.values() for e in entries if e["kind"] == "artifact"]
    errors = [e for entries in ledgers.values() for e in entries if e["kind"] == "error"]

    # Every acknowledged metric point is in the database.
    missing = 0
    for i in range(WORKERS):
        acked_steps = {e["step"] for w, e in batches if w == i}
        for j in range(KEYS):
            stored = {(m.step, m.value) for m in client.get_metric_history(run_id, f"w{i}_k{j}")}
            missing += sum((s, float(s * 10 + j)) not in stored for s in acked_steps)
    assert missing == 0, f"{missing} acknowledged metric points are missing"

    # Every acknowledged artifact is in the store, byte for byte.
    for art in artifacts:
        worker_dir = art["name"].split("-")[0]
        local = client.download_artifacts(
            run_id, f"{worker_dir}/{art['name']}", dst_path=str(tmp_path / "down")
        )
        assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == art["sha256"]

    # The longest time any client waited for an acknowledgement across the faults.
    longest = max(e["acked"] - e["sent"] for _, e in batches)
    report = {
        "workers": WORKERS,
        "acknowledged_batches": len(batches),
        "acknowledged_points": len(batches) * KEYS,
        "acknowledged_artifacts": len(artifacts),
        "client_errors": len(errors),
        "missing_points": missing,
        "missing_artifacts": 0,
        "longest_ack_wait_s": round(longest, 1),
        "faults": faults,
    }
    print("\nFAULTS REPORT " + json.dumps(report, indent=2))
    assert len(batches) > WORKERS * 50 and len(artifacts) >= WORKERS * 3
