"""`metrics`: the kit's Prometheus exporter (doctor checks, counts, sizes, backups, lockouts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from mlops_platform import metrics as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, table
from mlops_platform.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)


def metrics(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve /metrics on."),
    port: int = typer.Option(9464, "--port", min=1, max=65535, help="Port to serve /metrics on."),
    checks_every: float = typer.Option(
        60.0, "--checks-every", min=5.0, help="Seconds between two runs of the doctor's checks."
    ),
    inventory_every: float = typer.Option(
        300.0,
        "--inventory-every",
        min=5.0,
        help="Seconds between two reads of counts, database size, schema and backups.",
    ),
    storage_every: float = typer.Option(
        900.0, "--storage-every", min=5.0, help="Seconds between two listings of the bucket."
    ),
    access_log: Path | None = typer.Option(
        None,
        "--access-log",
        help="The proxy's JSON access log, for lockouts (default: the local stack's).",
    ),
    skip_checks: list[str] = typer.Option(
        [],
        "--skip-check",
        help="Leave out one of the doctor's check groups (settings, database, s3, tracking, "
        "proxy, disk): one this exporter cannot reach from where it runs.",
    ),
    once: bool = typer.Option(False, "--once", help="Collect everything once, print, exit."),
    groups: list[str] = typer.Option(
        [],
        "--group",
        help="With --once: collect only this group (checks, inventory, storage, backup).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve the platform's metrics for Prometheus at http://HOST:PORT/metrics.

    The doctor's checks (status and duration of each), counts of experiments, runs,
    registered models and versions, database and bucket sizes, the age of the last
    verified backup, free disk and the proxy's lockouts. Expensive values are collected in
    the background and cached; each group's age is a series too.

    With --once: exit 1 when a group could not be collected (its error is printed).

    Example: mlops-platform metrics --port 9464
    """
    obj: Context = ctx.obj
    settings = obj.settings(check=False)
    _refuse_bad_options(access_log, groups, skip_checks)
    if once:
        every = ops.groups_for(skip_checks)
        chosen = {name: every[name] for name in groups or every}
        collector = ops.PlatformCollector(
            settings, groups=chosen, access_log=access_log or ops.default_access_log(settings)
        )
        for name in chosen:
            collector.refresh(name)
        code = 0 if all(state.ok for state in collector.state.values()) else 1
        _print_once(collector, as_json, exit_code=code)
        raise typer.Exit(code)
    if not _port_free(host, port):
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: the address is in use or not this machine's",
            fix="choose a free port with --port, or another --host",
        )
    # The resident exporter is small: exec `python -m mlops_platform.metrics` (no CLI, no
    # MLflow in memory); it collects in child processes of this command's --once.
    argv = [sys.executable, "-m", "mlops_platform.metrics", "--host", host, "--port", str(port)]
    if obj.env_file is not None:
        argv += ["--env-file", str(obj.env_file)]
    if access_log is not None:
        argv += ["--access-log", str(access_log)]
    argv += ["--checks-every", str(checks_every), "--inventory-every", str(inventory_every)]
    argv += ["--backup-every", str(inventory_every), "--storage-every", str(storage_every)]
    for name in skip_checks:
        argv += ["--skip-check", name]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def _port_free(host: str, port: int) -> bool:
    from mlops_platform.stack.base import bind_error

    return bind_error(port, host) is None


def _refuse_bad_options(access_log: Path | None, groups: list[str], skip_checks: list[str]) -> None:
    """One line naming a wrong --access-log, --group or --skip-check, before anything runs."""
    if access_log is not None and not access_log.is_file():
        raise ConfigError(
            f"--access-log {access_log} is not a file",
            fix="point it at the proxy's JSON access log, or leave it out",
        )
    unknown = sorted(set(groups) - set(ops.GROUPS))
    if unknown:
        raise ConfigError(
            f"--group {unknown[0]} is not a group",
            fix=f"choose from: {', '.join(ops.GROUPS)}",
        )
    from mlops_platform.health import CHECKS

    known_checks = [name for name, _ in CHECKS]
    bad = sorted(set(skip_checks) - set(known_checks))
    if bad:
        raise ConfigError(
            f"--skip-check {bad[0]} is not a doctor check group",
            fix=f"choose from: {', '.join(known_checks)}",
        )


def _print_once(collector: ops.PlatformCollector, as_json: bool, *, exit_code: int) -> None:
    samples = collector.samples()
    errors = {n: s.error for n, s in collector.state.items() if not s.ok and s.error}
    if as_json:
        emit({"groups": collector.groups_as_dict(), "errors": errors}, exit_code=exit_code)
        return
    rows = [
        [f"mlops_{s.name}", ", ".join(f"{k}={v}" for k, v in s.labels.items()), f"{s.value:g}"]
        for s in samples
    ]
    console.print(table("mlops-platform metrics", ["series", "labels", "value"], rows))
    for name, error in errors.items():
        console.print(f"[bold red]{name}[/]: {error}")
