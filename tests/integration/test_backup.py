"""`backup create | list | verify | restore | prune` against a real stack of their own.

A second stack (PostgreSQL, SeaweedFS, tracking server, nginx), `scratch_stack`, reset for
this module: the round trip destroys its database and its bucket, which the session stack
shared with other tests must never see.

One module, because its tests share the scratch stack through one module-scoped fixture
(`stack`); split, each part would reset it again (server stopped, databases restored,
bucket emptied).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_platform import __version__, backup, db, s3
from mlops_platform.settings import PlatformSettings
from tests.integration.conftest import shared_scratch
from tests.support.schemas import PREVIOUS_MINOR_HEAD, migrate_to
from tests.support.stacks import PrivateStack as Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, scratch_stack: Stack) -> Iterator[Stack]:
    yield from shared_scratch(request, scratch_stack)


# -- what the platform holds, read back in full -----------------------------------------


def store_objects(stack: Stack, prefix: str | None = None) -> dict[str, str]:
    """Every object under the artifact prefix: key -> sha256 of its bytes (read with boto3)."""
    client = stack.s3()
    prefix = (prefix or stack.settings.s3_prefix) + "/"
    out: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=stack.settings.s3_bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=stack.settings.s3_bucket, Key=item["Key"])["Body"]
            out[item["Key"]] = hashlib.sha256(body.read()).hexdigest()
    return out


def platform_contents(stack: Stack) -> dict[str, Any]:
    """Experiments, runs (params, tags, every metric point, inputs), logged models, registry
    and every artifact's sha256, as plain data that compares equal when nothing was lost."""
    from mlflow.entities import ViewType

    c = stack.client()
    out: dict[str, Any] = {"experiments": {}, "runs": {}, "logged_models": {}, "registry": {}}
    exps = c.search_experiments(view_type=ViewType.ALL)
    for e in exps:
        out["experiments"][e.experiment_id] = {
            "name": e.name,
            "stage": e.lifecycle_stage,
            "location": e.artifact_location,
            "tags": dict(e.tags),
            "created": e.creation_time,
        }
    ids = [e.experiment_id for e in exps]
    for r in c.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000):
        history = {
            key: sorted(
                (m.step, m.timestamp, m.value) for m in c.get_metric_history(r.info.run_id, key)
            )
            for key in r.data.metrics
        }
        out["runs"][r.info.run_id] = {
            "info": dict(r.info),
            "params": r.data.params,
            "tags": r.data.tags,
            "metrics": r.data.metrics,
            "history": history,
        }
    for m in c.search_logged_models(ids, max_results=1000):
        out["logged_models"][m.model_id] = {
            "name": m.name,
            "status": str(m.status),
            "params": m.params,
            "tags": m.tags,
            "run": m.source_run_id,
            "location": m.artifact_location,
        }
    for rm in c.search_registered_models():
        versions = {
            v.version: {
                "source": v.source,
                "run": v.run_id,
                "tags": v.tags,
                "status": v.status,
                "aliases": sorted(v.aliases),
                "model_id": getattr(v, "model_id", None),
            }
            for v in c.search_model_versions(f"name = '{rm.name}'")
        }
        out["registry"][rm.name] = {
            "tags": rm.tags,
            "aliases": rm.aliases,
            "description": rm.description,
            "versions": versions,
        }
    out["artifacts"] = store_objects(stack)
    return out


def populate(stack: Stack, work: Path, *, large_mb: int) -> None:
    """Experiments, nested runs with params, tags and metric histories, many small files and
    one large, logged models registered as several versions with aliases and tags."""
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    mlflow.set_tracking_uri(stack.client_env["MLFLOW_TRACKING_URI"])
    small = work / "small"
    small.mkdir()
    for i in range(120):
        (small / f"part-{i:03d}.txt").write_bytes(os.urandom(512 + i))
    (small / "sub").mkdir()
    (small / "sub" / "deep.json").write_text(json.dumps({"k": list(range(50))}))
    large = work / "large.bin"
    with open(large, "wb") as f:
        for _ in range(large_mb):
            f.write(os.urandom(1 << 20))
    c = stack.client()
    for e in range(2):
        mlflow.set_experiment(f"round-trip-{e}")
        mlflow.set_experiment_tags({"team": f"t{e}", "purpose": "backup"})
        for r in range(2):
            with mlflow.start_run(run_name=f"parent-{e}-{r}") as parent:
                mlflow.log_params({f"p{k}": f"v{k}-{r}" for k in range(6)})
                mlflow.set_tags({"stage": "dev", "ünïcode": "ok ✓"})
                for step in range(60):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                    mlflow.log_metric("acc", step / 60, step=step)
                for child in range(2):
                    with mlflow.start_run(run_name=f"child-{child}", nested=True):
                        mlflow.log_param("child", child)
                        mlflow.log_metric("x", child, step=0)
                        mlflow.log_metric("x", child + 1, step=1)
                if e == 0 and r == 0:
                    mlflow.log_artifacts(str(small), artifact_path="small")
                    mlflow.log_artifact(str(large), artifact_path="big")
                    for n in range(3):
                        info = mlflow.pyfunc.log_model(
                            name=f"echo-{n}", python_model=Echo(), pip_requirements=[]
                        )
                        version = mlflow.register_model(info.model_uri, "round-trip-model")
                        c.set_model_version_tag("round-trip-model", version.version, "n", str(n))
                    c.set_registered_model_tag("round-trip-model", "owner", "ml-team")
                    c.update_registered_model("round-trip-model", description="kept whole")
                    c.set_registered_model_alias("round-trip-model", "champion", "2")
                    c.set_registered_model_alias("round-trip-model", "challenger", "3")
            if e == 1 and r == 1:
                c.delete_run(parent.info.run_id)
    mlflow.set_tracking_uri("")


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _one_line_exit_2(result: Any, *words: str, after_progress: bool = False) -> None:
    """Exit 2 with one `error:` line; with ``after_progress`` the refusal may follow the
    progress of the checks that found it (a damaged file is found by reading it)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_progress:
        assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# -- the tests ---------------------------------------------------------------------------


def test_round_trip_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    populate(stack, tmp_path, large_mb=60)
    before = platform_contents(stack)
    assert (
        len(before["runs"]) == 12 and len(before["registry"]["round-trip-model"]["versions"]) == 3
    )
    assert any(k.endswith("big/large.bin") for k in before["artifacts"])
    assert sum("/models/m-" in k for k in before["artifacts"]) >= 3

    created = _json(stack.cli("backup", "create", "--json"))
    assert created["copied"] == len(before["artifacts"]) and created["skipped_newer"] == 0
    assert created["row_counts"]["runs"] == 12
    listed = _json(stack.cli("backup", "list", "--json"))["backups"]
    assert [b["id"] for b in listed] == [created["id"]]

    # a second backup of the unchanged platform downloads nothing (incremental)
    again = _json(stack.cli("backup", "create", "--json"))
    assert again["copied"] == 0 and again["linked"] == created["artifacts"]
    assert again["previous"] == created["id"]

    verified = _json(stack.cli("backup", "verify", created["id"], "--json"))
    assert verified["ok"] and verified["restored_counts"]["runs"] == 12, verified

    # destroy both the database and the bucket
    name = stack.settings.db_name
    stack.superuser_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    stack.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{stack.settings.db_user}"')
    # the bucket itself is the admin key's to delete (the server's may only use it)
    client, bucket = s3.client(stack.settings, purpose="admin"), stack.settings.s3_bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)

    restored = _json(stack.cli("backup", "restore", created["id"], "--yes", "--json"))
    assert restored["row_counts_match"] and not restored["upgraded"], restored
    assert restored["uploaded"] == len(before["artifacts"])

    after = platform_contents(stack)
    for part in ("experiments", "runs", "logged_models", "registry", "artifacts"):
        assert after[part] == before[part], part
    # and the restored platform works: a new run logs and reads back
    with_run = stack.client().create_run(
        before["runs"][next(iter(before["runs"]))]["info"]["experiment_id"]
    )
    stack.client().log_metric(with_run.info.run_id, "after", 1.0)
    assert stack.client().get_run(with_run.info.run_id).data.metrics == {"after": 1.0}


def test_verify_can_use_a_temporary_database_on_the_same_server(stack: Stack) -> None:
    """Where no throwaway cluster can start: a scratch database, dropped afterwards; and
    a clear refusal when the user may not create one."""
    import sqlalchemy

    ids = [b["id"] for b in _json(stack.cli("backup", "list", "--json"))["backups"]]
    path, manifest = backup.find_backup(stack.settings, ids[0])
    user = stack.settings.db_user
    with (
        pytest.raises(backup.BackupError, match="CREATEDB"),
        backup.temporary_database(stack.settings, backup.QuietReporter()),
    ):
        pass
    stack.superuser_sql(f'ALTER ROLE "{user}" CREATEDB')
    try:
        with backup.temporary_database(stack.settings, backup.QuietReporter()) as scratch:
            name = scratch.db_name
            db.restore_dump(scratch, path / backup.DUMP)
            engine = db.make_engine(scratch)
            try:
                with engine.connect() as conn:
                    assert backup.row_counts(conn) == manifest.row_counts
            finally:
                engine.dispose()
    finally:
        stack.superuser_sql(f'ALTER ROLE "{user}" NOCREATEDB')
    assert name not in stack.superuser_sql("SELECT datname FROM pg_database")
    engine = db.make_engine(stack.settings)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar() == 13
    finally:
        engine.dispose()


def test_verify_names_a_corrupted_dump_a_missing_and_an_altered_artifact(stack: Stack) -> None:
    ids = [b["id"] for b in _json(stack.cli("backup", "list", "--json"))["backups"]]
    assert ids, "runs after test_round_trip_loses_nothing"
    root = backup.backup_root(stack.settings)
    src = root / ids[0]
    damaged = root / (ids[0][:16] + "-77")
    shutil.copytree(src, damaged)  # a real copy: the originals are hard-linked
    manifest = json.loads((damaged / "manifest.json").read_text())
    arts = manifest["artifacts"]
    missing, altered = arts[0]["key"], arts[1]["key"]
    prefix = manifest["prefix"] + "/"
    (damaged / "artifacts" / missing[len(prefix) :]).unlink()
    target = damaged / "artifacts" / altered[len(prefix) :]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    dump = damaged / "database.dump"
    raw = bytearray(dump.read_bytes())
    for i in range(100, 110):
        raw[len(raw) // 2 + i] ^= 0x5A
    dump.write_bytes(bytes(raw))
    try:
        result = stack.cli("backup", "verify", damaged.name)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "database.dump does not match its checksum" in result.stdout
        assert f"artifact {missing} is missing" in result.stdout
        assert f"artifact {altered} does not match its checksum" in result.stdout
        # the good one still verifies (quick: checksums only)
        assert stack.cli("backup", "verify", ids[0], "--quick").returncode == 0
        # and a restore refuses the damaged backup before changing anything
        refused = stack.cli("backup", "restore", damaged.name, "--yes", "--force")
        _one_line_exit_2(refused, "is damaged", "database.dump", after_progress=True)
    finally:
        shutil.rmtree(damaged)


def _state(stack: Stack) -> tuple[dict[str, int], dict[str, str], list[str]]:
    engine = db.make_engine(stack.settings)
    try:
        with engine.connect() as conn:
            counts = backup.row_counts(conn)
    finally:
        engine.dispose()
    root = backup.backup_root(stack.settings)
    return counts, store_objects(stack), sorted(p.name for p in root.iterdir())


def test_bad_input_refuses_in_one_line_and_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    ids = [b["id"] for b in _json(stack.cli("backup", "list", "--json"))["backups"]]
    assert ids, "runs after test_round_trip_loses_nothing"
    before = _state(stack)

    missing = tmp_path / "no-such-disk" / "backups"
    _one_line_exit_2(
        stack.cli("backup", "create", MLOPS_BACKUP_DIR=str(missing)), str(missing), "mkdir -p"
    )
    assert not missing.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _one_line_exit_2(stack.cli("backup", "create", MLOPS_BACKUP_DIR=str(a_file)), "is not a folder")
    _one_line_exit_2(
        stack.cli("backup", "create", MLOPS_BACKUP_DIR=str(a_file / "sub")), "does not exist"
    )
    # read-only even for root: sysfs refuses new files to everyone
    _one_line_exit_2(stack.cli("backup", "create", MLOPS_BACKUP_DIR="/sys"), "/sys is not writable")

    _one_line_exit_2(stack.cli("backup", "verify", "20000101T000000Z"), "no backup", "backup list")
    _one_line_exit_2(stack.cli("backup", "restore", "../etc", "--yes"), "no backup")
    _one_line_exit_2(stack.cli("backup", "restore", ids[0], "--yes"), "not empty", "--force")

    root = backup.backup_root(stack.settings)
    future = root / (ids[0][:16] + "-88")
    shutil.copytree(root / ids[0], future)
    manifest = json.loads((future / "manifest.json").read_text())
    manifest["kit_version"] = "99.0.0"
    (future / "manifest.json").write_text(json.dumps(manifest))
    try:
        _one_line_exit_2(
            stack.cli("backup", "restore", future.name, "--yes", "--force"),
            "kit version 99.0.0",
            "install mlops-platform 99.0.0",
        )
        assert _state(stack)[:2] == before[:2]
        # a schema this MLflow does not know (a backup of a newer MLflow)
        manifest["kit_version"] = __version__
        manifest["schema_revision"], manifest["mlflow_version"] = "0123456789ab", "9.1.0"
        (future / "manifest.json").write_text(json.dumps(manifest))
        _one_line_exit_2(
            stack.cli("backup", "restore", future.name, "--yes", "--force"),
            "newer than this MLflow",
            "install MLflow 9.1.0",
        )
        assert _state(stack)[:2] == before[:2]
    finally:
        shutil.rmtree(future)
    assert _state(stack) == before
    _one_line_exit_2(stack.cli("backup", "prune", "--older-than", "soon", "--yes"), "30d")


def _older_schema_database(stack: Stack, name: str) -> PlatformSettings:
    """A database as MLflow 3.16 left it (MLflow's own Alembic scripts up to its head)."""
    stack.superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    stack.superuser_sql(f'CREATE DATABASE "{name}" OWNER "{stack.settings.db_user}"')
    settings = stack.settings.model_copy(update={"db_name": name})
    migrate_to(settings, PREVIOUS_MINOR_HEAD, experiment="from-3.16")
    return settings


def test_restoring_an_older_schema_upgrades_it(stack: Stack, tmp_path: Path) -> None:
    _older_schema_database(stack, "older")
    stack.superuser_sql('DROP DATABASE IF EXISTS "older_restored" WITH (FORCE)')
    stack.superuser_sql(f'CREATE DATABASE "older_restored" OWNER "{stack.settings.db_user}"')
    env = {"MLOPS_BACKUP_DIR": str(tmp_path), "MLOPS_S3_PREFIX": "older"}
    made = _json(stack.cli("backup", "create", "--json", MLOPS_DB_NAME="older", **env))
    assert made["schema_revision"] == PREVIOUS_MINOR_HEAD
    done = _json(
        stack.cli(
            "backup",
            "restore",
            made["id"],
            "--yes",
            "--json",
            MLOPS_DB_NAME="older_restored",
            **env,
        )
    )
    assert done["upgraded"] and done["schema_before"] == PREVIOUS_MINOR_HEAD
    assert done["schema_after"] == db.head_revision()
    restored = stack.settings.model_copy(update={"db_name": "older_restored"})
    assert db.schema_status(restored).current == db.head_revision()
    import sqlalchemy

    engine = db.make_engine(restored)
    try:
        with engine.connect() as conn:
            name = conn.execute(
                sqlalchemy.text("SELECT name FROM experiments WHERE experiment_id = 7")
            ).scalar()
    finally:
        engine.dispose()
    assert name == "from-3.16"


def test_backup_while_a_client_logs_is_consistent(stack: Stack) -> None:
    """Every run the dump holds has all its artifacts in the copy; nothing in the copy
    belongs to a run the dump does not hold; files written after the snapshot are out."""
    import mlflow

    c = stack.client()
    exp = c.create_experiment("logging-during-backup")
    stop = threading.Event()
    errors: list[BaseException] = []
    logged: list[str] = []

    def one_run(tag: str) -> str:
        run = c.create_run(exp, run_name=tag)
        for n in range(3):
            c.log_text(run.info.run_id, f"{tag}-{n}", f"files/{n}.txt")
        c.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    def logger() -> None:
        try:
            i = 0
            while not stop.is_set():
                logged.append(one_run(f"bg-{i}"))
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    mlflow.set_tracking_uri(stack.client_env["MLFLOW_TRACKING_URI"])
    thread = threading.Thread(target=logger, daemon=True)
    thread.start()
    late: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while len(logged) < 3:  # a failed logger thread fails the test instead of hanging it
            assert not errors, errors
            assert time.monotonic() < deadline, f"the logger made {len(logged)} runs in 120 s"
            time.sleep(0.1)
        result = backup.create_backup(
            stack.settings, before_copy=lambda: late.append(one_run("after-snapshot"))
        )
    finally:
        stop.set()
        thread.join(60)
        mlflow.set_tracking_uri("")
    assert not errors, errors
    m = result.manifest
    assert m.skipped_newer + m.skipped_unreferenced >= 3  # at least the late run's files

    # what the dump really holds: restored into a throwaway PostgreSQL
    import sqlalchemy

    with backup.throwaway_postgres(stack.settings, backup.QuietReporter()) as scratch:
        db.restore_dump(scratch, result.path / backup.DUMP)
        with db.connection(scratch, checked=False) as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT run_uuid, status, experiment_id FROM runs WHERE experiment_id = :e"
                ),
                {"e": int(exp)},
            ).all()
    in_dump = {str(r[0]): str(r[1]) for r in rows}
    assert late[0] not in in_dump
    keys = {a.key for a in m.artifacts}
    prefix = f"{stack.settings.s3_prefix}/{exp}/"
    copied_runs = {k[len(prefix) :].split("/")[0] for k in keys if k.startswith(prefix)}
    assert copied_runs <= set(in_dump), copied_runs - set(in_dump)
    finished = [r for r, status in in_dump.items() if status == "FINISHED"]
    assert len(finished) >= 3
    for run_id in finished:
        for n in range(3):
            assert f"{prefix}{run_id}/artifacts/files/{n}.txt" in keys, (run_id, n)
    assert not any(late[0] in k for k in keys)


def test_prune_keeps_the_newest(stack: Stack) -> None:
    before = [b["id"] for b in _json(stack.cli("backup", "list", "--json"))["backups"]]
    assert len(before) >= 3
    dry = _json(stack.cli("backup", "prune", "--keep", "1", "--dry-run", "--json"))
    assert dry["removed"] == before[:-1] and dry["dry_run"]
    assert [b["id"] for b in _json(stack.cli("backup", "list", "--json"))["backups"]] == before
    done = _json(stack.cli("backup", "prune", "--keep", "1", "--yes", "--json"))
    assert done["kept"] == before[-1:]
    left = _json(stack.cli("backup", "list", "--json"))["backups"]
    assert [b["id"] for b in left] == before[-1:]
    # the survivor shares files with the pruned ones through hard links: still whole
    assert stack.cli("backup", "verify", before[-1], "--quick").returncode == 0


def _auth_users(stack: Stack) -> dict[str, Any]:
    """MLflow's user store as `users list` reads it: name -> (role, sorted grants)."""
    listed = _json(stack.cli("users", "list", "--json"))["users"]
    return {
        u["name"]: (u["role"], sorted((g["kind"], g["target"], g["level"]) for g in u["grants"]))
        for u in listed
    }


def test_restore_brings_users_roles_and_grants_back(stack: Stack) -> None:
    """The auth store is backed up with the platform: a deleted user and a revoked grant
    come back with `backup restore`, and the server enforces the restored grant."""
    import uuid

    import requests

    from mlops_platform import auth_store

    url = stack.client_env["MLFLOW_TRACKING_URI"].rstrip("/")
    exp = stack.client().create_experiment(f"granted-{uuid.uuid4().hex[:8]}")
    reader = _json(stack.cli("users", "add", "svc-reader", "--role", "service", "--generate",
                             "--json"))  # fmt: skip
    assert stack.cli("users", "add", "bob", "--role", "approver", "--generate").returncode == 0
    assert stack.cli("users", "grant", "svc-reader", "experiment", exp, "READ").returncode == 0

    def reader_status() -> int:
        return requests.get(
            f"{url}/api/2.0/mlflow/experiments/get",
            params={"experiment_id": exp},
            auth=("svc-reader", reader["generated_password"]),
            timeout=30,
        ).status_code

    assert reader_status() == 200
    before = _auth_users(stack)
    assert before["bob"][0] == "approver"
    assert before["svc-reader"] == ("service", [("experiment", exp, "READ")])

    created = _json(stack.cli("backup", "create", "--json"))
    assert created["auth_database"] == stack.settings.auth_db_name
    assert created["auth_row_counts"]["users"] >= 3 and created["auth_dump_bytes"] > 0
    path = backup.backup_root(stack.settings) / created["id"]
    manifest = json.loads((path / backup.MANIFEST).read_text())
    auth_dump = path / backup.AUTH_DUMP
    assert manifest["auth_dump_sha256"] == hashlib.sha256(auth_dump.read_bytes()).hexdigest()
    assert manifest["auth_revision"] == auth_store.head_revision()
    verified = _json(stack.cli("backup", "verify", created["id"], "--json"))
    assert verified["ok"], verified

    # the grant is revoked and bob deleted from MLflow's user store
    assert stack.cli("users", "revoke", "svc-reader", "experiment", exp).returncode == 0
    store = auth_store.open_store(stack.settings)
    try:
        assert auth_store.delete_user(store, "bob")
    finally:
        store.engine.dispose()
    assert reader_status() == 403
    damaged = _auth_users(stack)
    assert damaged["svc-reader"] == ("service", []) and damaged.get("bob", (None,))[0] is None

    restored = _json(stack.cli("backup", "restore", created["id"], "--force", "--yes", "--json"))
    assert restored["auth_restored"] and restored["row_counts_match"], restored
    assert _auth_users(stack) == before
    assert reader_status() == 200  # the server enforces the restored grant again


def test_verify_names_a_corrupted_auth_dump(stack: Stack) -> None:
    latest = _json(stack.cli("backup", "list", "--json"))["backups"][-1]["id"]
    path = backup.backup_root(stack.settings) / latest
    auth_dump = path / backup.AUTH_DUMP
    original = auth_dump.read_bytes()
    try:
        auth_dump.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        result = stack.cli("backup", "verify", latest, "--json")
        assert result.returncode == 1, result.stderr
        problems = json.loads(result.stdout)["problems"]
        assert f"{backup.AUTH_DUMP} does not match its checksum (corrupted)" in problems
        refused = stack.cli("backup", "restore", latest, "--force", "--yes")
        assert refused.returncode == 2 and "auth.dump does not match" in refused.stderr
    finally:
        auth_dump.write_bytes(original)
