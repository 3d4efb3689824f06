"""`s3 diagnose`, `s3 apply-policy`: the artifact store."""

from __future__ import annotations

import typer

from mlops_platform import s3 as s3_ops
from mlops_platform.cli.common import JSON_OPTION, console, emit, table

s3_app = typer.Typer(help="The artifact store: diagnose it, set its policy.", no_args_is_help=True)

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def register(app: typer.Typer) -> None:
    app.add_typer(s3_app, name="s3")


def checks_table(title: str, checks: list[s3_ops.Check]):  # type: ignore[no-untyped-def]
    out = table(title, ["check", "status", "detail", "remedy"], [])
    for c in checks:
        out.add_row(c.name, f"[{STYLE[c.status]}]{c.status.upper()}[/]", c.detail, c.remedy)
    return out


@s3_app.command("diagnose")
def diagnose(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Skip the multipart and presigned trips."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check endpoint, credentials, bucket privacy, round trips, lifecycle, encryption, latency.

    Exit code 0 when every check passes, 1 with warnings, 2 when one fails.

    Example: mlops-platform s3 diagnose --json
    """
    report = s3_ops.diagnose(ctx.obj.settings(), quick=quick)
    code = {"fail": 2, "warn": 1}.get(report.status, 0)
    if as_json:
        emit(report.as_dict(), exit_code=code)
    else:
        console.print(checks_table(f"s3 {report.endpoint} bucket {report.bucket}", report.checks))
        console.print(f"overall: {report.status.upper()}")
    raise typer.Exit(code)


@s3_app.command("apply-policy")
def apply_policy(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Set the lifecycle rule (abort incomplete uploads) and default encryption; idempotent.

    Encryption is checked with a real write and removed again if the store then refuses
    writes (exit code 1).

    Example: mlops-platform s3 apply-policy
    """
    result = s3_ops.apply_policy(ctx.obj.settings())
    code = 1 if result.encryption == "unsupported" else 0
    if as_json:
        emit(result.as_dict(), exit_code=code)
        return
    words = {
        "set": "set",
        "skipped": "already set, skipped",
        "unsupported": "the store accepted it but then refused writes, so it was removed "
        "again (SeaweedFS needs an SSE key: s3.sse.kek in its security.toml)",
    }
    for name, action in result.as_dict().items():
        console.print(f"{name}: {words[action]}")
    raise typer.Exit(code)
