"""The exporter's prometheus_client collector: the groups' cached values, plus what is
cheap enough to read at scrape time (free disk space, the proxy's new access-log lines)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlops_platform.metrics.groups import DEFAULT_INTERVALS, GROUPS, Sample
from mlops_platform.settings import PlatformSettings

# names of the due groups -> per group: samples (None on failure), error, seconds
Runner = Callable[[list[str]], dict[str, tuple[list[Sample] | None, str, float]]]


@dataclass
class GroupState:
    samples: list[Sample] = field(default_factory=list)
    collected_at: float | None = None  # time.time() of the last successful collection
    ok: bool = False
    error: str = ""
    seconds: float = 0.0


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
