"""The resident exporter process (``python -m mlops_platform.metrics``): its HTTP server,
its refresh loop, and the child that collects the heavy groups."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_platform.metrics.collector import PlatformCollector, Runner
from mlops_platform.metrics.groups import DEFAULT_INTERVALS, GROUPS, Sample, collect_checks
from mlops_platform.settings import PlatformSettings


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
