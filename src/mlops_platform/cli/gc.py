"""`gc`: permanently remove deleted runs, experiments and logged models, check the store."""

from __future__ import annotations

import typer

from mlops_platform import gc as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, table


def register(app: typer.Typer) -> None:
    app.command("gc")(gc)


def gc(
    ctx: typer.Context,
    older_than: str = typer.Option(
        None,
        "--older-than",
        help="Only what was deleted longer ago than this: 30d, 12h, 1d12h, 90m, 2w "
        "(default: everything in the deleted stage).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would be removed; remove nothing."
    ),
    purge_leftovers: bool = typer.Option(
        False,
        "--purge-leftovers",
        help="Delete the objects `mlflow gc` left behind in the store.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run `mlflow gc` on deleted runs, experiments and logged models, then check that their
    objects are gone from the store; exit 1 when some are left (see --purge-leftovers).

    Example: mlops-platform gc --older-than 30d --dry-run
    """
    obj: Context = ctx.obj
    result = ops.collect(
        obj.settings(), older_than=older_than, dry_run=dry_run, purge_leftovers=purge_leftovers
    )
    code = 1 if result.leftovers else 0
    if as_json:
        emit(result.as_dict(), exit_code=code)
    else:
        verb = "would remove" if result.dry_run else "removed"
        if result.items:
            out = table(
                f"{verb}: {result.count('run')} runs, {result.count('experiment')} "
                f"experiments, {result.count('logged_model')} logged models",
                ["kind", "id", "name", "experiment", "objects", "left over"],
                [
                    [
                        i.kind,
                        i.id,
                        i.name,
                        i.experiment_id,
                        i.objects if i.kind != "experiment" else "",
                        len(i.leftovers) if not result.dry_run else "",
                    ]
                    for i in result.items
                ],
            )
            out.columns[1].no_wrap = True
            console.print(out)
        else:
            console.print(
                "nothing to remove: no runs, experiments or logged models are deleted"
                + (f" longer than {older_than} ago" if older_than else "")
            )
        if result.purged:
            console.print(f"purged {result.purged} left-over objects")
        if result.leftovers:
            console.print(
                f"FAIL: {len(result.leftovers)} objects of removed entities are still in the "
                "store, e.g. "
                + ", ".join(result.leftovers[:3])
                + "; run `mlops-platform gc --purge-leftovers` to delete them",
                soft_wrap=True,
                highlight=False,
            )
    raise typer.Exit(code)
