"""`doctor`, `health live`, `health ready`: find what is wrong, and probes for orchestrators."""

from __future__ import annotations

import typer
from rich.markup import escape

from mlops_platform import health
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, table
from mlops_platform.errors import ConfigError
from mlops_platform.settings import load_settings

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
health_app = typer.Typer(
    help="Probes for compose healthchecks and Kubernetes.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.add_typer(health_app, name="health")


def _print(report: health.Report, title: str, as_json: bool, *, all_rows: bool = True) -> None:
    if as_json:
        emit(report.as_dict(), exit_code=report.exit_code)
        return
    # The fix goes under the detail, in the same cell: five columns do not fit in 80.
    out = table(title, ["component", "check", "status", "detail and fix"], [])
    for f in report.findings:
        if all_rows or f.status != "ok":
            fix = f"\n[bold]fix:[/bold] {escape(f.remedy)}" if f.remedy and f.status != "ok" else ""
            out.add_row(
                f.component,
                f.check,
                f"[{STYLE[f.status]}]{f.status.upper()}[/]",
                escape(f.detail) + fix,
            )
    if out.rows:
        console.print(out)
    word = {"ok": "healthy", "warn": "degraded", "fail": "broken"}[report.status]
    console.print(f"{word} (exit {report.exit_code}) in {report.seconds:.1f}s")


def _print_lines(report: health.Report, as_json: bool, exit_code: int) -> None:
    """Probes print one plain line per check: probe logs are read in narrow places."""
    if as_json:
        emit(report.as_dict(), exit_code=exit_code)
        return
    for f in report.findings:
        fix = f"; {f.remedy}" if f.remedy and f.status != "ok" else ""
        typer.echo(f"{f.status.upper()} {f.component} {f.check}: {f.detail}{fix}")


def doctor(
    ctx: typer.Context,
    problems_only: bool = typer.Option(False, "--problems", help="Show only what is not ok."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check settings, database, schema, indexes, S3, server, proxy and disk; say how to fix.

    Exit code 0 healthy, 1 degraded (a warning), 2 broken (a failure).

    Example: mlops-platform doctor --json
    """
    obj: Context = ctx.obj
    try:
        settings = load_settings(obj.env_file, check=False)
    except ConfigError as exc:
        report = health.Report(
            [health.Finding("settings", "valid", "fail", exc.message, exc.fix or "")]
        )
    else:
        report = health.doctor(settings)
    _print(report, "mlops-platform doctor", as_json, all_rows=not problems_only)
    raise typer.Exit(report.exit_code)


@health_app.command("live")
def live(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Liveness: the tracking server process answers; exit 0 or 2.

    Example: mlops-platform health live
    """
    finding = health.liveness(ctx.obj.settings(check=False))
    report = health.Report([finding])
    _print_lines(report, as_json, report.exit_code)
    raise typer.Exit(report.exit_code)


@health_app.command("ready")
def ready(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Readiness: the server answers and reaches its database (at head) and bucket.

    Example: mlops-platform health ready --json
    """
    report = health.readiness(ctx.obj.settings(check=False))
    code = 0 if report.status == "ok" else 2
    _print_lines(report, as_json, code)
    raise typer.Exit(code)
