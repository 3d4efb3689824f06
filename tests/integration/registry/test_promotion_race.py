"""Concurrent promotions leave one approved champion."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.integration.registry.support import aliases, cli, new_model

pytestmark = pytest.mark.integration


def _worker(
    client_env: dict[str, str],
    name: str,
    role: str,
    version: str,
    dataset: str,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    os.environ.update(client_env)
    from mlops_platform import registry as reg

    registry = reg.Registry(client_env["MLFLOW_TRACKING_URI"], actor=f"worker-{role}")
    for round_no in range(rounds):
        barrier.wait(timeout=120)  # the main process has reset @champion to v1
        try:
            if role.startswith("cas"):
                move = registry.move_alias(name, "champion", version, expected="1")
                outcome = f"moved:{move.after}"
            else:
                res = registry.promote(
                    name, Path(dataset), metric="accuracy", challenger=version, retries=5
                )
                outcome = f"promoted:{version}" if res.promoted else f"kept:{res.champion}"
        except reg.PlatformError as exc:
            outcome = type(exc).__name__
            if type(exc) is reg.RegistryError:  # unexpected: keep the message for the report
                outcome += f": {exc}"
        results.put((round_no, role, outcome))
        barrier.wait(timeout=120)  # the main process checks


def _run_rounds(
    platform: Platform,
    name: str,
    roles: dict[str, str],
    dataset: str,
    rounds: int,
    check: Any,
) -> list[tuple[int, str, str]]:
    from mlops_platform import registry as reg

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(roles) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(platform.client_env, name, role, v, dataset, rounds, barrier, results),
        )
        for role, v in roles.items()
    ]
    for p in procs:
        p.start()
    registry = reg.Registry(platform.client_env["MLFLOW_TRACKING_URI"], actor="test-reset")
    seen: list[tuple[int, str, str]] = []
    try:
        for round_no in range(rounds):
            current = registry.alias_version(name, "champion")
            if current != "1":
                registry.move_alias(name, "champion", "1", expected=current)
            barrier.wait(timeout=180)
            barrier.wait(timeout=180)
            got = [results.get(timeout=30) for _ in roles]
            assert {r[0] for r in got} == {round_no}
            check(round_no, {role: outcome for _, role, outcome in got})
            seen += got
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return seen


def _champion_chain(history: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["before"], e["after"]) for e in history if e["event"] == "alias_moved"
            and e["alias"] == "champion"]  # fmt: skip


def test_concurrent_promotions_leave_one_approved_champion(
    platform: Platform, governed: dict[str, Any], mlflow_client_env: dict[str, str]
) -> None:
    from mlops_platform import registry as reg

    name = new_model(platform, governed)
    uri = governed["uri"]
    lenient = str(governed["dir"] / "lenient.yaml")
    for v in ("1", "2", "3"):  # v4 (the best scorer) is never approved
        assert cli(platform, "registry", "approve", name, v, "--gates", lenient).returncode == 0
    registry = reg.Registry(uri, actor="test")
    registry.move_alias(name, "champion", "1", expected=None)
    rounds = int(os.environ.get("MLOPS_TEST_RACE_ROUNDS", "10"))
    started = time.monotonic()

    # 1. the bare compare-and-set: two processes move @champion from v1 at the same instant
    def one_winner(round_no: int, outcome: dict[str, str]) -> None:
        winners = [o for o in outcome.values() if o.startswith("moved:")]
        assert len(winners) == 1, (round_no, outcome)
        assert sorted(outcome.values()) == sorted([winners[0], "PromotionConflictError"])
        assert registry.alias_version(name, "champion") == winners[0].split(":")[1]

    cas = _run_rounds(platform, name, {"cas-a": "2", "cas-b": "3"}, "", rounds, one_winner)
    assert {o for _, _, o in cas} >= {"PromotionConflictError"}

    # 2. full promotions: v2 and v3 (approved) and v4 (unapproved) race from champion v1
    def best_approved_wins(round_no: int, outcome: dict[str, str]) -> None:
        assert outcome["unapproved"] == "NotApprovedError", outcome
        assert registry.alias_version(name, "champion") == "3", (round_no, outcome)
        assert outcome["strong"] == "promoted:3" or outcome["strong"].startswith("kept:3")
        assert outcome["medium"] in ("promoted:2", "kept:3"), outcome

    dataset = str(governed["dir"] / "holdout.csv")
    _run_rounds(
        platform,
        name,
        {"medium": "2", "strong": "3", "unapproved": "4"},
        dataset,
        rounds,
        best_approved_wins,
    )
    history = registry.history(name)
    chain = _champion_chain([{**e.data, "event": e.event} for e in history])
    # every move starts where the previous one ended: no lost or interleaved update
    assert all(prev[1] == nxt[0] for prev, nxt in zip(chain, chain[1:], strict=False)), chain
    assert chain[-1][1] == registry.alias_version(name, "champion") == "3"
    assert "4" not in {after for _, after in chain}
    assert not any(k.startswith(reg.LOCK_PREFIX) for k in aliases(uri, name))
    from mlflow import MlflowClient

    leftover = MlflowClient(uri).search_registered_models(f"name = '{reg.LOCK_PREFIX}{name}'")
    assert leftover == []
    print(f"race rounds: {rounds} x 2 in {time.monotonic() - started:.1f} s")
