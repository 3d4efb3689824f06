"""A rolling restart of two tracking server replicas under load loses no client call.

The ledger workload of test_faults (several client processes, MLflow's own client,
`log_batch` and artifacts, every acknowledged write and every HTTP retry written down)
runs against a stack with MLOPS_SERVER_REPLICAS=2 while `mlops-platform restart
tracking` restarts both replicas one after the other. Not one call may fail, none may
even be retried because of a replica (a 5xx answer, a refused connection), clients must
keep being acknowledged during the restart, both replicas must come back with new pids,
and every acknowledged metric point and artifact must be there afterwards.

The one retry a client may see: each nginx reload closes the clients' idle kept-alive
connections (its old workers exit), and a client that sends a request on one at that
very moment gets it reset and sends it again on a new connection. nginx never read that
request, so nothing ran twice; it is HTTP/1.1 keep-alive's own race, met at any nginx
reload, not a replica answering while it stops (nginx answers the client with a 502
then, never by resetting the client's connection).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env
from tests.support.ledger import (
    WORKERS,
    assert_acknowledged_writes_kept,
    ledger_load,
    read_ledgers,
    wait_for_acks,
)
from tests.support.stacks import down_later

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Path]:
    require_binaries()
    root = make_stack_dir("mlops-rolling-")
    env_file = write_env(root, server_replicas="2")
    result = run_cli(env_file, "up", timeout=600)
    assert result.returncode == 0, result.stderr
    try:
        yield env_file
    finally:
        down_later(env_file, remove=root)


# what urllib3 says when the server closed a kept-alive connection the client had just
# sent a request on (reset, or closed before any answer)
CLOSED_IDLE = ("ConnectionResetError", "RemoteDisconnected", "BrokenPipeError")


def closed_by_a_reload(retry: dict[str, Any], start: float, end: float) -> bool:
    msg = str(retry["msg"])
    return (
        msg.startswith("Retrying")
        and "connection broken by" in msg
        and any(kind in msg for kind in CLOSED_IDLE)
        and start <= retry["at"] <= end
    )


def tracking_pids(env_file: Path) -> dict[str, int]:
    status = json.loads(run_cli(env_file, "status", "--json").stdout)
    return {
        s["name"]: int(s["pid"])
        for s in status["services"]
        if s["name"].startswith("tracking") and s["healthy"]
    }


def test_rolling_restart_loses_no_call(
    stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = stack
    before = tracking_pids(env_file)
    assert sorted(before) == ["tracking", "tracking-2"], before
    client_env = json.loads(run_cli(env_file, "client-env", "--json").stdout)["env"]
    for key, value in client_env.items():
        monkeypatch.setenv(key, value)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
    run_id = client.create_run(client.create_experiment("rolling-restart")).info.run_id

    with ledger_load(client_env, run_id, tmp_path) as load_start:
        wait_for_acks(tmp_path, load_start, 10)
        restart_start = time.time()
        restarted = run_cli(env_file, "restart", "tracking", "--json", timeout=600)
        restart_end = time.time()
        assert restarted.returncode == 0, restarted.stderr
        wait_for_acks(tmp_path, restart_end, 10)
    result = json.loads(restarted.stdout)
    assert result["restarted"] == ["tracking", "tracking-2"] and result["drained"], result
    after = tracking_pids(env_file)
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before), (
        before,
        after,
    )

    ledgers = read_ledgers(tmp_path)
    entries = [e for es in ledgers.values() for e in es]
    errors = [e for e in entries if e["kind"] == "error"]
    resets, retries = [], []  # retries: those a reload's keep-alive race does not explain
    for entry in (e for e in entries if e["kind"] == "retry"):
        reset = closed_by_a_reload(entry, restart_start, restart_end)
        (resets if reset else retries).append(entry)
    batches = [(i, e) for i, es in ledgers.items() for e in es if e["kind"] == "batch"]
    artifacts = [e for e in entries if e["kind"] == "artifact"]
    during = [e for _, e in batches if restart_start < e["acked"] < restart_end]
    longest = max(e["acked"] - e["sent"] for _, e in batches)
    print(
        "\nROLLING RESTART "
        + json.dumps(
            {
                "restart_seconds": round(restart_end - restart_start, 1),
                "acknowledged_batches": len(batches),
                "acknowledged_during_restart": len(during),
                "acknowledged_artifacts": len(artifacts),
                "client_errors": len(errors),
                "client_retries": len(retries),
                "idle_connections_reset_by_reloads": len(resets),
                "longest_ack_wait_s": round(longest, 2),
            }
        )
    )
    assert errors == [], errors[:5]
    assert retries == [], retries[:5]
    # 3 reloads (one per replica, one to put the last back), each closing at most the
    # idle connections of each client process (one for the API, one for artifacts)
    assert len(resets) <= 3 * WORKERS * 2, resets
    # the load ran across the whole restart, not around it
    assert len(during) >= WORKERS * 10, len(during)

    assert_acknowledged_writes_kept(client, run_id, batches, artifacts, tmp_path)
    assert artifacts, "the workload logged no artifact"
