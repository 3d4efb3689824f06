"""The kit's Prometheus exporter: what `doctor` knows, as series (`mlops-platform metrics`).

Cheap to scrape: what costs something (the doctor's checks, counts and sizes from the
database, the bucket's size, the backups) is collected by a background loop, each group
at its own interval, and a scrape only reads the cached values. Every group exposes the
age of its values (``mlops_collect_age_seconds``) and whether its last collection worked
(``mlops_collect_success``). What is cheap is read at scrape time: free disk space and the
new lines of the proxy's access log (lockouts, rate limiting, responses by class).

Series (all prefixed ``mlops_``; docs/monitoring.md lists them with their alerts):

- ``check_status{component,check}`` 0 ok, 1 warn, 2 fail (the doctor's exit codes), and
  ``check_duration_seconds{component,check}``: one series per doctor check;
- ``database_migrations_pending``, ``database_size_bytes{database}``,
  ``tracking_objects{kind}`` (experiments, runs, registered_models, model_versions);
- ``bucket_size_bytes``, ``bucket_objects``;
- ``backup_last_verified_timestamp_seconds`` (0 when there is none),
  ``backup_last_verified_size_bytes``, ``backups``;
- ``disk_free_ratio{path}``, ``disk_free_bytes{path}``;
- ``proxy_lockouts_total``, ``proxy_rate_limited_total``, ``proxy_responses_total{code}``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlops_platform.settings import PlatformSettings

STATUS_VALUE = {"ok": 0.0, "warn": 1.0, "fail": 2.0}
DEFAULT_INTERVALS = {"checks": 60.0, "inventory": 300.0, "storage": 900.0, "backup": 300.0}
# The tracking database's tables counted by `mlops_tracking_objects{kind}`.
COUNTED = {
    "experiments": "SELECT count(*) FROM experiments WHERE lifecycle_stage = 'active'",
    "runs": "SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'",
    "registered_models": "SELECT count(*) FROM registered_models",
    "model_versions": "SELECT count(*) FROM model_versions",
}


@dataclass(frozen=True)
class Sample:
    """One value of one series."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


# names of the due groups -> per group: samples (None on failure), error, seconds
Runner = Callable[[list[str]], dict[str, tuple[list[Sample] | None, str, float]]]


@dataclass
class GroupState:
    samples: list[Sample] = field(default_factory=list)
    collected_at: float | None = None  # time.time() of the last successful collection
    ok: bool = False
    error: str = ""
    seconds: float = 0.0


# -- the groups: each returns its samples; a failure raises (and is kept as the error) ----


def collect_checks(settings: PlatformSettings, skip: Iterable[str] = ()) -> list[Sample]:
    """The doctor's checks: one status and one duration series per check. ``skip``: the
    doctor's check groups (``health.CHECKS``: settings, database, s3, tracking, proxy,
    disk) this exporter cannot run where it is (compose's, which only nginx lets reach the
    tracking server)."""
    from mlops_platform import health

    findings = health.doctor(settings, skip=skip).findings
    out: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.component, finding.check)
        if finding.status not in STATUS_VALUE or key in seen:
            continue  # a skipped check has no status; a repeated one keeps its first row
        seen.add(key)
        labels = {"component": finding.component, "check": finding.check}
        out.append(Sample("check_status", STATUS_VALUE[finding.status], labels))
        out.append(Sample("check_duration_seconds", finding.seconds, labels))
    return out


def collect_inventory(settings: PlatformSettings) -> list[Sample]:
    """Counts, database size and the schema's distance to MLflow's head: one psycopg
    connection, no SQLAlchemy, no MLflow import (MLflow's migration chain is read from its
    files once, :mod:`mlops_platform.migrations`)."""
    import psycopg

    url = settings.database_url(with_password=True).replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_database(), pg_database_size(current_database()),"
            " to_regclass('alembic_version') IS NOT NULL,"
            " (SELECT count(*) FROM pg_catalog.pg_tables"
            "  WHERE schemaname = current_schema() AND tablename <> 'alembic_version')"
        ).fetchone()
        assert row is not None
        name, size, versioned, tables = row
        current = None
        if versioned:
            found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            current = str(found[0]) if found else None
        counts = {}
        if tables:
            for kind, sql in COUNTED.items():
                found = conn.execute(sql).fetchone()  # type: ignore[arg-type]
                counts[kind] = float(found[0] if found else 0)
    out = [
        Sample("database_migrations_pending", float(pending_migrations(current, empty=not tables))),
        Sample("database_size_bytes", float(size or 0), {"database": str(name)}),
    ]
    out += [Sample("tracking_objects", value, {"kind": kind}) for kind, value in counts.items()]
    return out


def pending_migrations(current: str | None, *, empty: bool = False) -> int:
    """Migrations between ``current`` and MLflow's head: all of them on an empty schema,
    0 at the head or at a revision this MLflow does not know (a newer schema)."""
    from mlops_platform.migrations import tracking_chain

    chain = tracking_chain()
    if empty:
        return len(chain.pending(None))
    if current is None:
        return 0
    return len(chain.pending(current))


# -- the object store over plain HTTP (AWS Signature Version 4) --------------------------

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _sign(key: bytes, text: str) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_get(settings: PlatformSettings, params: dict[str, str], *, timeout: float = 10.0) -> bytes:
    """A signed GET on the bucket (ListObjectsV2 and the like) with the standard library:
    what boto3 would send, without boto3's ~40 MB. Static keys only (the backup key when
    set, like the backup's own listing)."""
    import hashlib
    import urllib.error
    import urllib.request
    from urllib.parse import quote, urlsplit

    key_id, secret = settings.s3_credentials("backup")
    region = settings.s3_region
    endpoint = settings.s3_endpoint or f"https://s3.{region}.amazonaws.com"
    parts = urlsplit(endpoint)
    bucket = settings.s3_bucket
    if settings.s3_path_style:
        host, path = parts.netloc, f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}"
    else:
        host, path = f"{bucket}.{parts.netloc}", parts.path.rstrip("/") or "/"
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    now = dt.datetime.now(dt.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "GET",
            path,
            query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _sign(f"AWS4{secret}".encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _sign(key, part)
    signature = _sign(key, to_sign).hex()
    request = urllib.request.Request(
        f"{parts.scheme}://{host}{path}?{query}",
        headers={
            "x-amz-content-sha256": payload,
            "x-amz-date": stamp,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()[:2000].decode(errors="replace")
        code = body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""
        raise RuntimeError(f"S3 GET {bucket} answered {exc.code} {code}".strip()) from None


def collect_storage(settings: PlatformSettings) -> list[Sample]:
    """The bucket's size and object count under the kit's prefix (one listing, 1000 keys a
    page). Plain signed HTTP with static keys; boto3 (its credential chain: an instance
    role) only when there are none."""
    import xml.etree.ElementTree as ET

    prefix = settings.s3_prefix.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    if not all(settings.s3_credentials("backup")):
        return _storage_with_boto3(settings, prefix)
    size = objects = 0
    token = ""
    while True:
        params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            params["continuation-token"] = token
        page = ET.fromstring(s3_get(settings, params))
        for item in page.iter(f"{S3_NS}Contents"):
            size += int(item.findtext(f"{S3_NS}Size") or 0)
            objects += 1
        token = page.findtext(f"{S3_NS}NextContinuationToken") or ""
        if page.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
            break
    return [Sample("bucket_size_bytes", float(size)), Sample("bucket_objects", float(objects))]


def _storage_with_boto3(settings: PlatformSettings, prefix: str) -> list[Sample]:
    from mlops_platform import s3

    client = s3.client(settings, timeout=10, retries=2, purpose="backup")
    paginator = client.get_paginator("list_objects_v2")
    size = objects = 0
    for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            size += int(obj.get("Size", 0))
            objects += 1
    return [Sample("bucket_size_bytes", float(size)), Sample("bucket_objects", float(objects))]


def collect_backup(settings: PlatformSettings) -> list[Sample]:
    """The newest verified backup: complete (manifest written after every checksum) and
    its dump on disk of the manifest's size. Timestamp 0 when there is none."""
    from mlops_platform import backup

    backups = backup.list_backups(settings)
    stamp = size = 0.0
    for info in reversed(backups):
        dump = info.path / backup.DUMP
        try:
            if dump.stat().st_size != info.dump_bytes:
                continue
        except OSError:
            continue
        stamp = dt.datetime.fromisoformat(info.finished_at).timestamp()
        size = float(info.dump_bytes + info.artifact_bytes)
        break
    return [
        Sample("backup_last_verified_timestamp_seconds", stamp),
        Sample("backup_last_verified_size_bytes", size),
        Sample("backups", float(len(backups))),
    ]


GROUPS: dict[str, Callable[[PlatformSettings], list[Sample]]] = {
    "checks": collect_checks,
    "inventory": collect_inventory,
    "storage": collect_storage,
    "backup": collect_backup,
}


# -- read at scrape time -----------------------------------------------------------------


def disk_samples(settings: PlatformSettings) -> list[Sample]:
    paths = {"state folder": settings.state_dir}
    if not settings.external_db:
        paths["postgres data"] = settings.state_dir / "postgres" / "data"
    out = []
    for label, path in paths.items():
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        usage = shutil.disk_usage(probe)
        ratio = usage.free / usage.total if usage.total else 0.0
        out.append(Sample("disk_free_ratio", ratio, {"path": label}))
        out.append(Sample("disk_free_bytes", float(usage.free), {"path": label}))
    return out


class AccessLogCounter:
    """Counts the proxy's JSON access log lines appended since the exporter started.

    A lockout is a 429 that the request-rate limit did not cause (the failed-login
    lockout; the rare concurrent-connection limit also answers so). Reads only the new
    bytes at each scrape; a rotated or truncated log is read again from its start.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lockouts = 0
        self.rate_limited = 0
        self.responses: dict[str, int] = {}
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        self._lock = threading.Lock()
        if path is not None:
            try:
                info = path.stat()
                self._inode, self._offset = info.st_ino, info.st_size
            except OSError:
                pass

    def update(self) -> None:
        if self.path is None:
            return
        with self._lock:
            try:
                info = self.path.stat()
            except OSError:
                return
            if info.st_ino != self._inode or info.st_size < self._offset:
                self._inode, self._offset, self._partial = info.st_ino, 0, b""
            if info.st_size == self._offset:
                return
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read(info.st_size - self._offset)
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._count(line)

    def _count(self, line: bytes) -> None:
        start = line.find(b'"status":')
        if start < 0:
            return
        code = line[start + 9 : start + 12]
        if not code.isdigit():
            return
        klass = f"{chr(code[0])}xx"
        self.responses[klass] = self.responses.get(klass, 0) + 1
        if code == b"429":
            if b'"rate_limit":"REJECTED' in line:
                self.rate_limited += 1
            else:
                self.lockouts += 1


class PlatformCollector(Collector):
    """prometheus_client's collector: cached groups, plus disk and the access log live."""

    def __init__(
        self,
        settings: PlatformSettings,
        *,
        intervals: dict[str, float] | None = None,
        access_log: Path | None = None,
        groups: dict[str, Callable[[PlatformSettings], list[Sample]]] | None = None,
        clock: Callable[[], float] = time.time,
        runner: Runner | None = None,
        remote: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.groups = dict(GROUPS if groups is None else groups)
        self.intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
        self.state = {name: GroupState() for name in self.groups}
        self.access = AccessLogCounter(access_log)
        self.clock = clock
        self.runner = runner
        # the groups ``runner`` collects (all of them when not said); the rest run here
        self.remote = set(self.groups if remote is None else remote) if runner else set()
        self.started = clock()
        self._attempted: dict[str, float] = {}

    # -- the background side -------------------------------------------------------
    def refresh(self, name: str) -> GroupState:
        """Collect one group in this process."""
        start = time.monotonic()
        self._attempted[name] = start
        try:
            samples: list[Sample] | None = self.groups[name](self.settings)
            error = ""
        except Exception as exc:  # noqa: BLE001 - kept and exposed, never a crash
            first = (str(exc).strip().splitlines() or [""])[0]
            samples, error = None, f"{exc.__class__.__name__}: {first}"[:300]
        return self.apply(name, samples, error, time.monotonic() - start)

    def apply(
        self, name: str, samples: list[Sample] | None, error: str, seconds: float
    ) -> GroupState:
        state = self.state[name]
        if samples is None:
            state.ok, state.error = False, error or "no values"
        else:
            state.samples, state.ok, state.error = samples, True, ""
            state.collected_at = self.clock()
        state.seconds = seconds
        return state

    def refresh_due(self) -> dict[str, GroupState]:
        """Collect every group that is due: the ``remote`` ones through ``runner`` (one
        child process for them all), the others here."""
        names = self.due()
        if not names:
            return {}
        here = [name for name in names if name not in self.remote]
        away = [name for name in names if name in self.remote]
        out = {name: self.refresh(name) for name in here}
        if away and self.runner is not None:
            now = time.monotonic()
            for name in away:
                self._attempted[name] = now
            results = self.runner(away)
            for name in away:
                out[name] = self.apply(name, *results.get(name, (None, "not collected", 0.0)))
        return out

    def due(self) -> list[str]:
        now = time.monotonic()
        return [
            name
            for name in self.groups
            if name not in self._attempted
            or now - self._attempted[name] >= self.intervals.get(name, 300.0)
        ]

    def run(self, stop: threading.Event, log: Callable[[str], None] | None = None) -> None:
        """Refresh what is due until ``stop`` is set."""
        while not stop.is_set():
            for name, state in self.refresh_due().items():
                if log is not None and not state.ok:
                    log(f"{name}: {state.error}")
            stop.wait(1.0)

    def groups_as_dict(self) -> dict[str, Any]:
        return {
            name: {
                "ok": state.ok,
                "error": state.error,
                "seconds": round(state.seconds, 3),
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": s.value} for s in state.samples
                ],
            }
            for name, state in self.state.items()
        }

    # -- the scrape side -------------------------------------------------------------
    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        now = self.clock()
        for name, state in self.state.items():
            out += state.samples
            since = state.collected_at if state.collected_at is not None else self.started
            out.append(Sample("collect_age_seconds", max(0.0, now - since), {"group": name}))
            out.append(Sample("collect_success", 1.0 if state.ok else 0.0, {"group": name}))
            out.append(Sample("collect_duration_seconds", state.seconds, {"group": name}))
        try:
            out += disk_samples(self.settings)
        except OSError:
            pass
        return out

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[Sample]] = {}
        for sample in self.samples():
            by_name.setdefault(sample.name, []).append(sample)
        for name, samples in by_name.items():
            family = GaugeMetricFamily(
                f"mlops_{name}", HELP.get(name, name), labels=list(samples[0].labels)
            )
            for sample in samples:
                family.add_metric(list(sample.labels.values()), sample.value)
            yield family
        yield from self.proxy_families()

    def proxy_families(self) -> Iterable[Metric]:
        if self.access.path is None:
            return []
        self.access.update()
        lockouts = CounterMetricFamily("mlops_proxy_lockouts", HELP["proxy_lockouts"])
        lockouts.add_metric([], self.access.lockouts)
        limited = CounterMetricFamily("mlops_proxy_rate_limited", HELP["proxy_rate_limited"])
        limited.add_metric([], self.access.rate_limited)
        responses = CounterMetricFamily(
            "mlops_proxy_responses", HELP["proxy_responses"], labels=["code"]
        )
        for code, count in sorted(self.access.responses.items()):
            responses.add_metric([code], count)
        return [lockouts, limited, responses]


COUNTERS = ("proxy_lockouts", "proxy_rate_limited", "proxy_responses")


def series_names() -> set[str]:
    """Every series name this exporter can produce (counters with their ``_total``)."""
    return {f"mlops_{n}_total" if n in COUNTERS else f"mlops_{n}" for n in HELP}


HELP = {
    "check_status": "The doctor's check: 0 ok, 1 warn, 2 fail (`mlops-platform doctor`).",
    "check_duration_seconds": "How long the doctor's check took.",
    "collect_age_seconds": "Age of the group's cached values (since the exporter started "
    "when there are none yet).",
    "collect_success": "1 when the group's last collection worked.",
    "collect_duration_seconds": "How long the group's last collection took.",
    "database_migrations_pending": "Migrations between the schema and MLflow's head.",
    "database_size_bytes": "pg_database_size of the tracking database.",
    "tracking_objects": "Active experiments and runs, registered models and versions.",
    "bucket_size_bytes": "Bytes of the objects under the kit's bucket and prefix.",
    "bucket_objects": "Objects under the kit's bucket and prefix.",
    "backup_last_verified_timestamp_seconds": "Finish time of the newest complete backup "
    "whose dump matches its manifest; 0 when there is none.",
    "backup_last_verified_size_bytes": "Dump plus artifact bytes of that backup.",
    "backups": "Complete backups in the backup folder.",
    "disk_free_ratio": "Free share of the disk holding the path.",
    "disk_free_bytes": "Free bytes of the disk holding the path.",
    "proxy_lockouts": "Proxy 429 answers not caused by the request-rate limit (failed-login "
    "lockouts), counted from the access log since the exporter started.",
    "proxy_rate_limited": "Proxy 429 answers of the request-rate limit.",
    "proxy_responses": "Proxy answers by status class, from the access log.",
}


def default_access_log(settings: PlatformSettings) -> Path | None:
    """The local stack's nginx access log, when the proxy is part of the stack."""
    if not settings.proxy_enabled:
        return None
    return settings.state_dir / "nginx" / "logs" / "access.log"


@dataclass
class Exporter:
    """A running exporter: its HTTP server and its refresh loop."""

    collector: PlatformCollector
    host: str
    port: int
    server: Any = None
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, log: Callable[[str], None] | None = None) -> None:
        """Serve /metrics and refresh until SIGTERM/SIGINT (``stop`` is set)."""
        from prometheus_client import start_http_server
        from prometheus_client.core import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        ProcessCollector(registry=registry)
        self.server, _ = start_http_server(self.port, addr=self.host, registry=registry)
        try:
            self.collector.run(self.stop, log)
        finally:
            self.server.shutdown()


def subprocess_runner(argv: list[str], *, timeout: float = 300.0) -> Runner:
    """Collect in a child process (``argv`` + ``--group NAME``...: `python -m
    mlops_platform.metrics --collect`, or `mlops-platform metrics --once --json`): the
    doctor's checks and the backup listing import SQLAlchemy and boto3, ~50 MB that
    the resident exporter then never holds; a hung check is killed at ``timeout``."""

    def run(names: list[str]) -> dict[str, tuple[list[Sample] | None, str, float]]:
        cmd = [*argv, *(arg for name in names for arg in ("--group", name))]
        start = time.monotonic()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {n: (None, f"collection took over {timeout:.0f}s", timeout) for n in names}
        took = time.monotonic() - start
        try:
            groups = json.loads(done.stdout)["groups"]
        except (ValueError, KeyError, TypeError):
            why = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return {n: (None, f"collector exited {done.returncode}: {why}", took) for n in names}
        out: dict[str, tuple[list[Sample] | None, str, float]] = {}
        for name in names:
            group = groups.get(name, {})
            if group.get("ok"):
                samples = [
                    Sample(s["name"], float(s["value"]), s["labels"]) for s in group["samples"]
                ]
                out[name] = (samples, "", float(group.get("seconds", took)))
            else:
                out[name] = (None, str(group.get("error", "not collected")), took)
        return out

    return run


# Collected by the resident exporter itself: psycopg and signed HTTP, a few MB. The
# others (the doctor's checks, the backup listing) need SQLAlchemy or boto3 and
# run in a short-lived child.
LEAN_GROUPS = ("inventory", "storage")


def groups_for(
    skip_checks: Iterable[str] = (),
) -> dict[str, Callable[[PlatformSettings], list[Sample]]]:
    """GROUPS, with the doctor's check groups in ``skip_checks`` left out of ``checks``."""
    skip = tuple(skip_checks)
    if not skip:
        return dict(GROUPS)
    return {**GROUPS, "checks": lambda settings: collect_checks(settings, skip)}


def lean_groups(settings: PlatformSettings) -> set[str]:
    """The groups the resident process collects: storage only with static keys (else
    boto3's credential chain, in the child)."""
    lean = set(LEAN_GROUPS)
    if not all(settings.s3_credentials("backup")):
        lean.discard("storage")
    return lean


def main(args: list[str] | None = None) -> None:
    """The resident exporter, small: `mlops-platform metrics` execs it after checking its
    options (``python -m mlops_platform.metrics``). With ``--collect``: the child that
    collects the heavy groups once and prints them as JSON."""
    import argparse
    import signal
    import sys

    from mlops_platform.settings import load_settings

    parser = argparse.ArgumentParser(prog="mlops-platform metrics")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--env-file", type=Path, default=None)
    parser.add_argument("--access-log", type=Path, default=None)
    parser.add_argument("--skip-check", action="append", default=[])
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--group", action="append", default=[])
    for group, default in DEFAULT_INTERVALS.items():
        parser.add_argument(f"--{group}-every", type=float, default=default)
    opts = parser.parse_args(args)
    settings = load_settings(opts.env_file, check=False)
    groups = groups_for(opts.skip_check)
    if opts.collect:
        chosen = {name: groups[name] for name in opts.group or groups}
        once = PlatformCollector(settings, groups=chosen)
        for name in chosen:
            once.refresh(name)
        print(json.dumps({"groups": once.groups_as_dict()}))
        return
    child = [sys.executable, "-m", "mlops_platform.metrics", "--collect"]
    if opts.env_file is not None:
        child += ["--env-file", str(opts.env_file)]
    for name in opts.skip_check:
        child += ["--skip-check", name]
    collector = PlatformCollector(
        settings,
        groups=groups,
        intervals={g: getattr(opts, f"{g}_every") for g in DEFAULT_INTERVALS},
        access_log=opts.access_log or default_access_log(settings),
        runner=subprocess_runner(child),
        remote=set(groups) - lean_groups(settings),
    )
    exporter = Exporter(collector, opts.host, opts.port)

    def _stop(signum: int, frame: Any) -> None:
        exporter.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    exporter.serve(log=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
