"""Retention: permanently remove deleted runs, experiments and logged models, then check
that their objects are really gone from the store.

``mlflow gc`` does the removal (it needs the tracking server's URI when artifacts are
proxied, and the backend store URI). What it would remove is read beforehand from the
database with the same rules, so ``--dry-run`` and the real run name the same things:

- runs in the ``deleted`` stage whose ``deleted_time`` is past ``older_than``, and every
  run of a removed experiment;
- experiments in the ``deleted`` stage whose ``last_update_time`` is past ``older_than``;
- logged models in the ``deleted`` stage whose ``last_updated_timestamp_ms`` is past it,
  and the logged models of removed experiments (the database drops them with the
  experiment, MLflow never deletes their files).

Afterwards every removed entity's key prefix in the bucket is listed: what is still
there is a leftover, reported, and deleted with ``purge_leftovers``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import sqlalchemy
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform import db, s3
from mlops_platform.errors import PlatformError
from mlops_platform.locks import hold_exclusive
from mlops_platform.render.server import client_env, server_env
from mlops_platform.settings import PlatformSettings, inherited_environment
from mlops_platform.units import mlflow_age, parse_age


class GcError(PlatformError):
    """Garbage collection cannot run or failed."""


def parse_older_than(text: str | None) -> int:
    """An age in the kit's grammar (``units.parse_age``: 30d, 12h, 1d12h, 90s) as
    milliseconds; None is 0."""
    if text is None:
        return 0
    return int(parse_age(text, error=GcError).total_seconds() * 1000)


def object_prefix(settings: PlatformSettings, uri: str | None) -> str | None:
    """The S3 key prefix (ending in ``/``) an MLflow artifact URI maps to in this platform's
    bucket, or None when the URI points elsewhere."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "mlflow-artifacts":
        path = parsed.path.strip("/")
        return f"{settings.s3_prefix}/{path}/" if path else None
    if parsed.scheme in ("s3", "s3a") and parsed.netloc == settings.s3_bucket:
        path = parsed.path.strip("/")
        if path == settings.s3_prefix or path.startswith(settings.s3_prefix + "/"):
            return path + "/"
    return None


@dataclass
class Item:
    kind: str  # run | experiment | logged_model
    id: str
    name: str
    experiment_id: str
    prefix: str | None  # the key prefix in the bucket, or None when elsewhere
    objects: int = 0  # objects under the prefix before the gc
    leftovers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GcResult:
    dry_run: bool
    older_than: str | None
    items: list[Item]
    purged: int
    seconds: float
    mlflow_output: list[str] = field(default_factory=list)

    @property
    def leftovers(self) -> list[str]:
        return [key for item in self.items for key in item.leftovers]

    def count(self, kind: str) -> int:
        return sum(1 for i in self.items if i.kind == kind)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than": self.older_than,
            "runs": self.count("run"),
            "experiments": self.count("experiment"),
            "logged_models": self.count("logged_model"),
            "items": [i.as_dict() for i in self.items],
            "leftovers": self.leftovers,
            "purged": self.purged,
            "seconds": round(self.seconds, 2),
        }


_RUNS_SQL = (
    "SELECT run_uuid, name, experiment_id, artifact_uri FROM runs "
    "WHERE (lifecycle_stage = 'deleted' AND deleted_time <= :limit) "
    "OR experiment_id = ANY(:exps) ORDER BY start_time, run_uuid"
)
_MODELS_SQL = (
    "SELECT model_id, name, experiment_id, artifact_location FROM logged_models "
    "WHERE (lifecycle_stage = 'deleted' AND last_updated_timestamp_ms <= :limit) "
    "OR experiment_id = ANY(:exps) ORDER BY creation_timestamp_ms, model_id"
)


def plan(settings: PlatformSettings, older_than_ms: int) -> list[Item]:
    """What ``mlflow gc`` will remove, read from the database with MLflow's own rules."""
    now = int(time.time() * 1000)
    limit = now - older_than_ms
    items: list[Item] = []
    with db.connection(settings) as conn:
        q = sqlalchemy.text
        exp_sql = (
            "SELECT experiment_id, name, artifact_location FROM experiments "
            "WHERE lifecycle_stage = 'deleted'"
            + (" AND last_update_time < :limit" if older_than_ms else "")
            + " ORDER BY experiment_id"
        )
        exps = conn.execute(q(exp_sql), {"limit": limit}).all()
        exp_ids = [int(r[0]) for r in exps]
        for r in exps:
            items.append(
                Item("experiment", str(r[0]), str(r[1]), str(r[0]), object_prefix(settings, r[2]))
            )
        # Deleted runs and logged models, and those of the deleted experiments.
        for kind, sql in (("run", _RUNS_SQL), ("logged_model", _MODELS_SQL)):
            rows = conn.execute(q(sql), {"limit": limit, "exps": exp_ids}).all()
            for r in rows:
                prefix = object_prefix(settings, r[3])
                items.append(Item(kind, str(r[0]), str(r[1] or ""), str(r[2]), prefix))
    return items


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    try:
        return [str(o["Key"]) for o in s3.iter_objects(client, bucket, prefix)]
    except ClientError as exc:
        code = s3.error_code(exc)
        if code in ("NoSuchBucket", "404"):
            return []
        raise GcError(
            f"cannot list s3://{bucket}/{prefix}: {code}",
            fix="check MLOPS_S3_* settings (`mlops-platform s3 diagnose`)",
        ) from None
    except BotoCoreError as exc:
        raise GcError(
            f"cannot reach the S3 endpoint: {exc}",
            fix="start the object store or fix MLOPS_S3_ENDPOINT_URL",
        ) from None


def gc_argv(
    items: list[Item], older_than: str | None, tracking_uri: str, store_uri: str
) -> list[str]:
    """``mlflow gc`` for exactly the planned entities. No secret in it: the database
    password goes in ``PGPASSWORD``, the proxy's in ``MLFLOW_TRACKING_PASSWORD``."""
    argv = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", store_uri]
    argv += ["--tracking-uri", tracking_uri]
    if older_than:
        argv += ["--older-than", older_than]
    for kind, option in (
        ("run", "--run-ids"),
        ("experiment", "--experiment-ids"),
        ("logged_model", "--logged-model-ids"),
    ):
        ids = [i.id for i in items if i.kind == kind]
        if ids:
            argv += [option, ",".join(ids)]
    return argv


def _tracking_uri(settings: PlatformSettings) -> str:
    return settings.resolved_public_url


def collect(
    settings: PlatformSettings,
    *,
    older_than: str | None = None,
    dry_run: bool = False,
    purge_leftovers: bool = False,
    timeout: float = 3600,
) -> GcResult:
    """Plan, run ``mlflow gc`` (unless ``dry_run``), then list what is left in the store."""
    start = time.monotonic()
    age_ms = parse_older_than(older_than)
    items = plan(settings, age_ms)
    client = s3.client(settings, timeout=60)
    for item in items:
        if item.prefix and item.kind != "experiment":
            item.objects = len(_keys(client, settings.s3_bucket, item.prefix))
    if dry_run or not items:
        return GcResult(dry_run, older_than, items, 0, time.monotonic() - start)
    # never while a backup copies: a file removed between its dump and its copy would be
    # missing from that backup
    with _no_backup_running(settings):
        # runs and models of removed experiments go with them (mlflow refuses them by ID when
        # they are not old enough themselves)
        removed_exps = {i.id for i in items if i.kind == "experiment"}
        model_ids = _deleted_model_ids(settings, [i.id for i in items if i.kind == "logged_model"])
        explicit = [
            i
            for i in items
            if i.kind == "experiment"
            or (i.experiment_id not in removed_exps and (i.kind == "run" or i.id in model_ids))
        ]
        # MLflow reads no weeks and no bare number: the same age in its own format
        age = mlflow_age(dt.timedelta(milliseconds=age_ms)) if older_than else None
        argv = gc_argv(explicit, age, _tracking_uri(settings), settings.database_url())
        env = {
            **inherited_environment(keep_settings=False),
            **server_env(settings),  # PGPASSWORD and the S3 credentials
            **client_env(settings),
        }
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0:
            err = [line for line in done.stderr.splitlines() if line.strip()]
            why = next(
                (line for line in reversed(err) if "Exception" in line or "Error" in line), None
            )
            raise GcError(
                f"mlflow gc failed: {why or (err[-1] if err else 'no output')}",
                fix="fix the error above and run `mlops-platform gc` again (it is safe to re-run)",
            )
        purged = 0
        for item in items:
            if item.prefix is None:
                continue
            # a removed experiment's own folder holds only what its runs and models left
            item.leftovers = _keys(client, settings.s3_bucket, item.prefix)
        if purge_leftovers:
            for item in items:
                if item.leftovers:
                    purged += s3.delete_keys(client, settings.s3_bucket, item.leftovers)
                    item.leftovers = _keys(client, settings.s3_bucket, item.prefix or "")
        _dedupe_leftovers(items)
        return GcResult(False, older_than, items, purged, time.monotonic() - start, output)


@contextlib.contextmanager
def _no_backup_running(settings: PlatformSettings) -> Iterator[None]:
    """Hold the backup folder's lock (the one ``backup create`` takes) so that gc and a
    backup on this host never overlap. No folder, or one we may not write: no backup of
    ours runs there, nothing to wait for."""
    from mlops_platform import backup

    root = backup.backup_root(settings)
    try:
        lock = open(root / ".lock", "a")  # noqa: SIM115 - held for the whole gc
    except OSError:
        yield
        return
    with lock:
        hold_exclusive(
            lock,
            GcError(
                f"a backup, restore or prune is working on {root}",
                fix="run `mlops-platform gc` after it (schedule them apart)",
            ),
        )
        yield


def _deleted_model_ids(settings: PlatformSettings, ids: list[str]) -> set[str]:
    """The logged models among ``ids`` that are themselves in the ``deleted`` stage (mlflow
    gc refuses the others; they go with their experiment)."""
    if not ids:
        return set()
    with db.connection(settings) as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT model_id FROM logged_models "
                "WHERE lifecycle_stage = 'deleted' AND model_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    return {str(r[0]) for r in rows}


def _dedupe_leftovers(items: list[Item]) -> None:
    """An experiment's folder contains its runs' and models' folders: name each key once,
    under the most specific entity."""
    claimed: set[str] = set()
    for item in sorted(items, key=lambda i: i.kind == "experiment"):
        item.leftovers = [k for k in item.leftovers if k not in claimed]
        claimed.update(item.leftovers)
