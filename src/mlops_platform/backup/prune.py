"""``backup prune``: remove old backups and stale partial folders."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from mlops_platform import units
from mlops_platform.backup.common import PARTIAL, BackupError, utc_now
from mlops_platform.backup.locations import backup_lock, check_destination, complete_ids
from mlops_platform.settings import PlatformSettings


@dataclass
class PruneResult:
    removed: list[str]
    kept: list[str]
    partial_removed: list[str]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_age(text: str) -> dt.timedelta:
    """An age in the kit's grammar (``units.parse_age``: 30d, 12h, 1d12h, 90m, 7)."""
    return units.parse_age(text, error=BackupError)


def plan_prune(
    ids: list[str], *, keep: int | None, older_than: dt.timedelta | None, now: dt.datetime
) -> list[str]:
    """IDs to remove, oldest first.

    ``keep`` alone keeps the newest N; ``older_than`` removes older ones but never the
    newest (nor the newest ``keep`` when both are given).
    """
    if not ids:
        return []
    protected = set(ids[-max(1, keep or 1) :])
    if older_than is None:
        remove = set(ids) - protected
    else:
        remove = {
            i
            for i in ids
            if now - dt.datetime.strptime(i[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
            > older_than
        } - protected
    return [i for i in ids if i in remove]


def prune_backups(
    settings: PlatformSettings,
    *,
    keep: int | None = None,
    older_than: str | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Remove old backups (hard links keep what newer ones still share) and stale partials."""
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1", fix="pass --keep 1 or more")
    age = parse_age(older_than) if older_than else None
    if keep is None and age is None:
        keep = settings.backup_keep
    root = check_destination(settings, create=False)
    with backup_lock(root):
        ids = complete_ids(root)
        remove = plan_prune(ids, keep=keep, older_than=age, now=utc_now())
        partials = sorted(p.name for p in root.iterdir() if p.name.endswith(PARTIAL))
        if not dry_run:
            for name in [*remove, *partials]:
                shutil.rmtree(root / name)
    return PruneResult(remove, [i for i in ids if i not in remove], partials, dry_run)
