"""The benchmark harness, at its quick sizes: it completes and produces every figure.

Timing is never asserted here: the figures are for docs/performance.md, measured with
`make bench` on a quiet machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import CLI, require_binaries

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_quick_harness_produces_every_figure(tmp_path: Path) -> None:
    require_binaries()
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [*CLI, "bench", "--quick", "--output", str(out)],
        cwd=tmp_path,  # `bench` finds the checkout from the package, not the cwd
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())

    assert set(report["startup"]) == {"kit stack", "reference server"}
    assert all(v["seconds_to_healthy"] > 0 for v in report["startup"].values())
    for name in ("reference server", "kit stack", "kit postgres", "kit seaweedfs",
                 "kit tracking", "kit nginx"):  # fmt: skip
        assert report["memory"][name]["pss_mb"] > 0, name
        assert report["memory_at_start"][name]["pss_mb"] > 0, name

    clients = report["sizes"]["clients"]
    assert {(r["workload"], r["clients"]) for r in report["writes"]} == {
        (kind, n) for kind in ("log_metric", "log_batch") for n in clients
    }
    for row in report["writes"]:
        for key in ("reference_rows_s", "kit_rows_s", "raw_postgres_rows_s", "kit_p95_ms"):
            assert row[key] > 0, (row, key)

    assert len(report["search"]) == 7
    assert all(r["runs"] >= report["sizes"]["runs"] for r in report["search"])
    assert all(r["kit_p50_ms"] > 0 and r["reference_p50_ms"] > 0 for r in report["search"])

    assert {r["direction"] for r in report["artifacts"]} == {"upload", "download"}
    assert all(r["kit_mb_s"] > 0 and r["store_direct_mb_s"] > 0 for r in report["artifacts"])
    # One streamed GET through each server (the artifact API's route and the UI's), and the
    # same read straight from the store.
    streamed = report["artifacts_streamed"]
    assert set(streamed) == {
        "kit (through the proxy)",
        "reference server",
        "kit (through the proxy), the UI's get-artifact",
        "reference server, the UI's get-artifact",
        "object store directly (one GetObject)",
    }
    for name, row in streamed.items():
        assert row["first_byte_s"] > 0 and row["mb_s"] > 0 and row["fraction_of_store"] > 0, name
    assert "object store directly (one GetObject)" in result.stdout

    # The same figures as a table on stdout.
    assert "| log_batch |" in result.stdout and "kit speed-up" in result.stdout


def test_cpu_per_call_accounts_every_group_of_processes() -> None:
    """`python -m benchmarks.cpu_per_call` (docs/performance.md, "What one `log_metric`
    call costs") runs at small sizes and gives each group of processes its CPU: the
    reference reached directly (no nginx), the kit through its nginx."""
    require_binaries()
    small = ["--seconds", "1", "--rounds", "1", "--clients", "2", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_per_call", *small],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    assert [row["server"] for row in rows] == ["default mlflow", "kit"]
    for row in rows:
        cpu = row["cpu_ms_per_call"]
        assert row["calls_s"] > 0 and row["errors"] == 0, row
        assert cpu["tracking server"] > 0 and cpu["postgres"] > 0 and cpu["clients"] > 0, row
        assert cpu["all"] == pytest.approx(sum(v for k, v in cpu.items() if k != "all"), abs=0.01)
    assert rows[1]["cpu_ms_per_call"]["nginx"] > 0  # the kit's calls cross its proxy
