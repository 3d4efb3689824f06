"""MLflow's Alembic migrations, read from the installed package's files, never imported.

``db status``, ``doctor`` and the metrics exporter need three answers about MLflow's
schemas: the head revision, whether a revision is one of MLflow's, and which migrations
lie between a revision and the head. Alembic answers them by importing MLflow (its
``env.py`` and config helpers), ~150 MB and seconds in a process that otherwise needs
neither. The migration scripts say all of it in two assignments and a docstring, so
they are parsed here instead. A unit test compares every answer with Alembic's for the
installed MLflow. Upgrades still run through MLflow's own Alembic.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Below the installed ``mlflow`` package.
TRACKING_VERSIONS = ("store", "db_migrations", "versions")
AUTH_VERSIONS = ("server", "auth", "db", "migrations", "versions")


@dataclass(frozen=True)
class Chain:
    """Each revision with the revisions it follows and the first line of its docstring."""

    parents: dict[str, tuple[str, ...]]
    titles: dict[str, str]

    def head(self) -> str:
        followed = {p for parents in self.parents.values() for p in parents}
        heads = sorted(set(self.parents) - followed)
        if len(heads) != 1:
            raise RuntimeError(f"MLflow's migrations have {len(heads)} heads: {heads}")
        return heads[0]

    def known(self, revision: str) -> bool:
        return revision in self.parents

    def ancestors(self, revision: str | None) -> set[str]:
        """``revision`` and every revision it follows (nothing for None, the empty base)."""
        seen: set[str] = set()
        todo = [revision] if revision else []
        while todo:
            rev = todo.pop()
            if rev not in seen:
                seen.add(rev)
                todo.extend(self.parents.get(rev, ()))
        return seen

    def pending(self, current: str | None) -> list[str]:
        """The migrations from ``current`` (exclusive) to the head, oldest first; [] when
        ``current`` is not one of these revisions (a newer MLflow's)."""
        if current is not None and not self.known(current):
            return []
        todo = self.ancestors(self.head()) - self.ancestors(current)
        ordered: list[str] = []
        while todo:
            ready = sorted(r for r in todo if not set(self.parents[r]) & todo)
            ordered += ready
            todo -= set(ready)
        return ordered


def _versions_folder(parts: tuple[str, ...]) -> Path:
    spec = importlib.util.find_spec("mlflow")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise RuntimeError("MLflow is not installed here: its schema's head is unknown")
    return Path(spec.origin).parent.joinpath(*parts)


def _parse(path: Path) -> tuple[str | None, tuple[str, ...], str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        named = isinstance(target, ast.Name) and target.id in ("revision", "down_revision")
        if named and value is not None:
            values[target.id] = ast.literal_eval(value)  # type: ignore[union-attr]
    revision = values.get("revision")
    down = values.get("down_revision")
    parents = (down,) if isinstance(down, str) else tuple(down or ())
    doc = (ast.get_docstring(tree) or "").strip()
    return (revision if isinstance(revision, str) else None), parents, (doc.splitlines() or [""])[0]


def read_chain(folder: Path) -> Chain:
    parents: dict[str, tuple[str, ...]] = {}
    titles: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        revision, follows, title = _parse(path)
        if revision is not None:
            parents[revision], titles[revision] = follows, title
    if not parents:
        raise RuntimeError(f"no Alembic migrations in {folder}")
    return Chain(parents, titles)


@functools.cache
def tracking_chain() -> Chain:
    """MLflow's tracking schema (the installed MLflow does not change under a process)."""
    return read_chain(_versions_folder(TRACKING_VERSIONS))


@functools.cache
def auth_chain() -> Chain:
    """MLflow's auth store (users, roles, grants)."""
    return read_chain(_versions_folder(AUTH_VERSIONS))


def mlflow_version() -> str:
    """The installed MLflow's version, from its package metadata (what serving images pin,
    what manifests and refusals name): ``import mlflow`` costs ~2 s of CPU in a CLI call
    that wants only the number."""
    from importlib.metadata import version

    return version("mlflow")
