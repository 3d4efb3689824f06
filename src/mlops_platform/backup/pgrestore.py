"""Replace a database's contents with a ``pg_dump -Fc`` archive, in one transaction."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlops_platform import db
from mlops_platform.backup.common import BackupError
from mlops_platform.settings import PlatformSettings


def drop_all_sql() -> str:
    """Drop every table, view, sequence, type and function the schema holds (in one
    transaction with the restore that follows)."""
    return """
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP VIEW IF EXISTS %I CASCADE', r.viewname);
  END LOOP;
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
  END LOOP;
  FOR r IN SELECT sequence_name FROM information_schema.sequences
           WHERE sequence_schema = current_schema() LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS %I CASCADE', r.sequence_name);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'c', 'd')
             AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid) LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = current_schema()
             AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.fn);
  END LOOP;
END $$;
"""


def restore_database(settings: PlatformSettings, dump: Path) -> None:
    """Replace the database's contents with the dump in ONE transaction.

    ``pg_restore -f -`` turns the archive into SQL; psql runs it after the drops with
    ``--single-transaction``: on any error nothing has changed.
    """
    pg_restore = db.client_binary(settings, "pg_restore", server_version=None)
    psql = db.client_binary(settings, "psql", server_version=None)
    env = db.client_env(settings)
    name = str(settings.db_parts()["name"])
    script = subprocess.Popen(
        [pg_restore, "--no-owner", "--no-privileges", "-f", "-", str(dump)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert script.stdout is not None
    runner = subprocess.Popen(
        [
            psql,
            "-X",
            "-q",
            "--no-password",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            *db.conn_args(settings),
            "-d",
            name,
            "-c",
            drop_all_sql(),
            "-f",
            "-",
        ],
        stdin=script.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    script.stdout.close()
    _, run_err = runner.communicate()
    _, dump_err = script.communicate()
    if script.returncode != 0 or runner.returncode != 0:
        err = (dump_err or run_err or b"").decode("utf-8", "replace").strip().splitlines()
        raise BackupError(
            f"restoring the database failed: {err[-1] if err else 'no output'}; "
            "the transaction was rolled back, the database is unchanged",
            fix="fix the error above and run `mlops-platform backup restore` again",
        )
