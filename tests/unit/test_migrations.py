"""The migrations read from MLflow's files answer as Alembic does, for the installed MLflow."""

from __future__ import annotations

import warnings

import pytest
from alembic.script import ScriptDirectory

from mlops_platform import migrations


def _alembic(kind: str) -> ScriptDirectory:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "tracking":
            from mlflow.store.db.utils import _get_alembic_config

            return ScriptDirectory.from_config(_get_alembic_config(db_url=""))
        from mlflow.server.auth.db.utils import _get_alembic_config as auth_config

        return ScriptDirectory.from_config(auth_config("postgresql://unused"))


@pytest.mark.parametrize(
    ("kind", "chain"),
    [("tracking", migrations.tracking_chain), ("auth", migrations.auth_chain)],
)
def test_the_parsed_chain_answers_as_alembic(kind: str, chain: object) -> None:
    script = _alembic(kind)
    parsed = chain()  # type: ignore[operator]
    assert parsed.head() == script.get_current_head()
    revisions = list(script.walk_revisions())
    assert {r.revision for r in revisions} == set(parsed.parents)
    assert len(revisions) >= 2
    for rev in revisions:
        assert parsed.known(rev.revision)
        expected = [r.revision for r in script.iterate_revisions(parsed.head(), rev.revision)]
        assert parsed.pending(rev.revision) == list(reversed(expected)), rev.revision
        first_line = (rev.doc or "").strip().splitlines()
        assert parsed.titles[rev.revision] == (first_line[0] if first_line else "")
    everything = [r.revision for r in script.iterate_revisions(parsed.head(), "base")]
    assert parsed.pending(None) == list(reversed(everything))
    assert not parsed.known("0123456789ab") and parsed.pending("0123456789ab") == []


def test_the_version_read_from_metadata_is_the_imported_one() -> None:
    import mlflow

    assert migrations.mlflow_version() == mlflow.__version__
