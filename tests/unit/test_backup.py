"""Pure parts of backup, gc and their schedules: no process, no network."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlops_platform import __version__, backup, gc
from mlops_platform.settings import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-db-pass"
UTC = dt.timezone.utc


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(db_password=PASSWORD)


def _snap(**ids: set[str]) -> backup.Snapshot:
    at = dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=UTC)
    return backup.Snapshot(
        "snap",
        at,
        {},
        ids.get("experiments", {"1"}),
        ids.get("runs", set()),
        ids.get("logged_models", set()),
        ids.get("traces", set()),
        None,
        "17",
    )


def _obj(key: str, seconds: int) -> backup.StoreObject:
    at = dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=UTC) + dt.timedelta(seconds=seconds)
    return backup.StoreObject(key, 1, "etag", at)


RUN = "a" * 32
LATE = "b" * 32


def test_selection_keeps_what_the_snapshot_knows_written_before_it() -> None:
    snap = _snap(runs={RUN}, logged_models={"m-1"}, traces={"tr-1"})
    cutoff = snap.snapshot_at
    objects = [
        _obj(f"artifacts/1/{RUN}/artifacts/a.txt", -60),
        _obj(f"artifacts/1/{RUN}/artifacts/b.txt", 1),  # same second: kept
        _obj(f"artifacts/1/{RUN}/artifacts/c.txt", 5),  # after the snapshot: out
        _obj(f"artifacts/1/{LATE}/artifacts/a.txt", -60),  # run unknown to the dump: out
        _obj("artifacts/1/models/m-1/artifacts/MLmodel", -1),
        _obj("artifacts/1/models/m-2/artifacts/MLmodel", -1),  # model unknown: out
        _obj("artifacts/1/traces/tr-1/artifacts/traces.json", -1),
        _obj("artifacts/9/notes.txt", -1),  # experiment unknown: out
        _obj("artifacts/../etc/passwd", -1),  # unsafe: out, named
    ]
    sel = backup.select_objects(objects, snap, "artifacts", cutoff)
    assert [o.key for o in sel.included] == [
        f"artifacts/1/{RUN}/artifacts/a.txt",
        f"artifacts/1/{RUN}/artifacts/b.txt",
        "artifacts/1/models/m-1/artifacts/MLmodel",
        "artifacts/1/traces/tr-1/artifacts/traces.json",
    ]
    assert sel.newer == 1 and sel.unreferenced == 3
    assert sel.unsafe == ["artifacts/../etc/passwd"]


@pytest.mark.parametrize(
    "key",
    [
        "artifacts/",
        "artifacts/a//b",
        "artifacts/./a",
        "artifacts/a/../../x",
        "other/a",
        "artifacts/a\\b",
    ],
)
def test_keys_that_could_escape_the_backup_folder_are_refused(key: str) -> None:
    assert backup.safe_relative(key, "artifacts") is None


def test_prune_plan_keeps_the_newest() -> None:
    ids = ["20260101T020000Z", "20260102T020000Z", "20260103T020000Z", "20260110T020000Z"]
    now = dt.datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
    assert backup.plan_prune(ids, keep=2, older_than=None, now=now) == ids[:2]
    assert backup.plan_prune(ids, keep=None, older_than=dt.timedelta(days=8.5), now=now) == ids[:1]
    # older_than never removes the newest, even when everything is old
    late = now + dt.timedelta(days=365)
    assert backup.plan_prune(ids, keep=None, older_than=dt.timedelta(days=1), now=late) == ids[:3]
    assert backup.plan_prune([], keep=1, older_than=None, now=now) == []


@pytest.mark.parametrize(
    ("text", "days"), [("30d", 30), ("12h", 0.5), ("90m", 0.0625), ("7", 7), ("1d12h", 1.5)]
)
def test_prune_ages(text: str, days: float) -> None:
    assert backup.parse_age(text) == dt.timedelta(days=days)


def test_prune_refuses_an_unreadable_age_as_a_backup_error() -> None:
    with pytest.raises(backup.BackupError, match="1d12h"):
        backup.parse_age("soon")


def test_a_manifest_from_another_kit_version_or_format_is_refused(tmp_path: Path) -> None:
    ok = {"kit": backup.KIT, "format": backup.FORMAT, "kit_version": __version__}
    backup.check_compatible(ok, where=tmp_path)
    for bad, words in (
        ({**ok, "kit_version": "99.0.0"}, "kit version 99.0.0"),
        ({**ok, "format": 7}, "format 7"),
        ({**ok, "kit": "something-else"}, "not a manifest"),
        ({**ok, "kit_version": "garbage"}, "unknown"),
    ):
        with pytest.raises(backup.BackupError, match=re.escape(words)):
            backup.check_compatible(bad, where=tmp_path)


def test_backup_ids_are_unique_and_sortable() -> None:
    now = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert backup.new_id(now, set()) == "20260304T050607Z"
    assert backup.new_id(now, {"20260304T050607Z"}) == "20260304T050607Z-1"
    assert backup.new_id(now, {"20260304T050607Z.partial"}) == "20260304T050607Z-1"


def test_dump_argv_carries_no_password(settings: PlatformSettings) -> None:
    argv = backup.dump_argv(settings, "pg_dump", Path("/b/database.dump"), "00000003-1")
    assert "-Fc" in argv and "--snapshot=00000003-1" in argv
    assert PASSWORD not in " ".join(argv)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30d", 30 * 86_400_000),
        ("1d12h", 129_600_000),
        ("90s", 90_000),
        ("2w", 14 * 86_400_000),
        ("10", 10 * 86_400_000),
        (None, 0),
    ],
)
def test_gc_ages_in_mlflow_format(text: str | None, ms: int) -> None:
    assert gc.parse_older_than(text) == ms


@pytest.mark.parametrize("text", ["", "a week", "-1d", "d", "12h1d"])
def test_gc_refuses_an_unreadable_age(text: str) -> None:
    with pytest.raises(gc.GcError, match="30d"):
        gc.parse_older_than(text)


def test_gc_maps_artifact_uris_to_this_bucket_only(settings: PlatformSettings) -> None:
    bucket, prefix = settings.s3_bucket, settings.s3_prefix
    assert (
        gc.object_prefix(settings, "mlflow-artifacts:/3/abc/artifacts")
        == f"{prefix}/3/abc/artifacts/"
    )
    assert gc.object_prefix(settings, f"s3://{bucket}/{prefix}/3/models/m-1/artifacts") == (
        f"{prefix}/3/models/m-1/artifacts/"
    )
    assert gc.object_prefix(settings, "s3://another-bucket/artifacts/3/abc") is None
    assert gc.object_prefix(settings, f"s3://{bucket}/elsewhere/3") is None
    assert gc.object_prefix(settings, "file:///tmp/x") is None
    assert gc.object_prefix(settings, None) is None


def test_gc_argv_names_exactly_the_planned_entities_and_no_secret(
    settings: PlatformSettings,
) -> None:
    items = [
        gc.Item("run", "r1", "", "1", None),
        gc.Item("run", "r2", "", "1", None),
        gc.Item("logged_model", "m-1", "", "1", None),
    ]
    argv = gc_argv = gc.gc_argv(items, "30d", "http://127.0.0.1:8080", settings.database_url())
    joined = " ".join(gc_argv)
    assert argv[argv.index("--run-ids") + 1] == "r1,r2"
    assert argv[argv.index("--logged-model-ids") + 1] == "m-1"
    assert "--experiment-ids" not in argv and argv[argv.index("--older-than") + 1] == "30d"
    assert PASSWORD not in joined


def test_the_k8s_cronjob_runs_create_then_prune_unattended() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/base/cronjobs.yaml").read_text()))
    cron = next(d for d in docs if d["metadata"]["name"] == "mlops-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = pod["containers"][0]["command"][-1]
    assert script.startswith("mlops-platform backup create && mlops-platform backup prune")
    assert "--yes" in script
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert env["MLOPS_BACKUP_DIR"] in mounts
    assert pod["securityContext"]["runAsNonRoot"] is True


def _scheduled_commands() -> list[list[str]]:
    """Every `mlops-platform ...` invocation in deploy/cron and deploy/systemd."""
    found: list[list[str]] = []
    paths = [*(ROOT / "deploy/cron").rglob("*"), *(ROOT / "deploy/systemd").rglob("*")]
    for path in sorted(paths):  # deploy/kubernetes: tests/static/kustomize/
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            skip = line.lstrip().startswith("#") or re.match(r"^[A-Za-z_]+=", line)
            if skip and not line.startswith("ExecStart="):  # comments, variables, Description=
                continue
            for part in re.split(r"&&|\|\||;|\(|\)|>>|\|", line):
                words = shlex.split(
                    part.split("=", 1)[1] if part.startswith("ExecStart=") else part
                )
                for i, word in enumerate(words):
                    if word.endswith("mlops-platform") and i + 1 < len(words):
                        found.append([w for w in words[i + 1 :] if not w.startswith("/var/")])
    return found


def test_every_scheduled_command_parses_and_never_prompts() -> None:
    import typer.main

    from mlops_platform.cli import app

    command = typer.main.get_command(app)
    found = _scheduled_commands()
    assert len(found) >= 6, found
    for args in found:
        cmd, rest = command, list(args)
        while hasattr(cmd, "list_commands"):  # a group: descend into the sub-command
            assert rest, args
            sub = cmd.get_command(cmd.context_class(cmd), rest[0])  # type: ignore[attr-defined]
            assert sub is not None, args
            cmd, rest = sub, rest[1:]
        cmd.make_context(cmd.name or "", rest)  # raises on an unknown option or argument
        if args[:2] in (["backup", "prune"], ["backup", "restore"]):
            assert "--yes" in args, args
    systemd = (ROOT / "deploy/systemd/mlops-backup.timer").read_text()
    assert "Persistent=true" in systemd and "OnCalendar=" in systemd


def test_a_destination_without_room_is_refused_naming_the_sizes(tmp_path: Path) -> None:
    with pytest.raises(backup.DestinationError, match=r"free, the backup needs about .*prune"):
        backup.check_space(tmp_path, 1 << 60)
    backup.check_space(tmp_path, 1)


def test_only_the_default_destination_is_created(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    assert backup.list_backups(settings) == []  # no backup yet: not an error
    root = backup.check_destination(settings, create=True)
    assert root == tmp_path / "backups" and root.is_dir()
    elsewhere = settings.model_copy(update={"backup_dir": tmp_path / "mnt" / "backups"})
    with pytest.raises(backup.DestinationError, match="does not exist"):
        backup.check_destination(elsewhere, create=True)
    assert not (tmp_path / "mnt").exists()
