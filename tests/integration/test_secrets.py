"""Secrets hygiene beyond argv and logs: backups and error messages never carry a secret.

(The process list and every service log are checked in tests/integration/test_stack.py;
`config show` and `init` in tests/unit/test_cli.py.)

Each scan is shown able to find what it looks for: a canary planted in the tracking data
(a param value and an artifact name) must be found in the dump once `pg_restore` has
turned it back into SQL, and in the manifest; the commands' output must hold the backup's
id. Each failing command must exit with its code and say its message, and a command that
exits 0 silently must fail that check (the negative control).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlops_platform import backup, db
from mlops_platform.settings import SECRET_FIELDS
from tests.conftest import free_port
from tests.integration.conftest import CLI, Platform
from tests.support.stacks import scratch_dir

pytestmark = pytest.mark.integration

# The secrets `init` generates for every stack: each must be there to be looked for.
GENERATED = ("db_password", "s3_secret_access_key", "proxy_password")


def secrets_of(platform: Platform) -> dict[str, str]:
    values = {name: getattr(platform.settings, name).get_secret_value() for name in SECRET_FIELDS}
    values = {name: value for name, value in values.items() if value}
    for name in GENERATED:
        assert len(values.get(name, "")) >= 12, f"the session stack has no generated {name}"
    return values


def leaks(text: str, secrets: dict[str, str], where: str) -> list[str]:
    return [f"{name} appears in {where}" for name, value in secrets.items() if value in text]


def as_sql(dump: Path, platform: Platform) -> str:
    """A custom-format dump as the SQL it restores (compressed bytes hide nothing then)."""
    pg_restore = db.client_binary(platform.settings, "pg_restore", server_version=None)
    result = subprocess.run(
        [pg_restore, "--file", "-", str(dump)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"pg_restore {dump}: {result.stderr}"
    assert "COPY public." in result.stdout, f"{dump} restored to no data"
    return result.stdout


@pytest.fixture
def scratch_folder() -> Iterator[Callable[[str], Path]]:
    """``scratch_dir`` folders for the test, each removed after it."""
    with contextlib.ExitStack() as folders:
        yield lambda prefix: folders.enter_context(scratch_dir(prefix))


def test_a_backup_holds_no_secret(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, scratch_folder: Callable[[str], Path]
) -> None:
    import mlflow

    secrets = secrets_of(platform)
    canary = f"planted-canary-{uuid.uuid4().hex}"
    for key, value in platform.client_env.items():  # for this test only
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(platform.client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"secrets-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "planted", canary)
    client.log_text(run.info.run_id, "planted", f"{canary}.txt")
    client.set_terminated(run.info.run_id)

    backups = scratch_folder("mlops-secrets-backup-")
    env = {**os.environ, "MLOPS_BACKUP_DIR": str(backups)}
    created = platform.cli("backup", "create", "--json", env=env, timeout=600)
    listing = platform.cli("backup", "list", "--json", env=env)
    manifests = list(backups.rglob(backup.MANIFEST))
    assert len(manifests) == 1, manifests
    folder = manifests[0].parent
    manifest = manifests[0].read_text()
    backup_id = json.loads(manifest)["id"]

    found: list[str] = []
    for name, result in (("backup create", created), ("backup list", listing)):
        output = result.stdout + result.stderr
        assert backup_id in output, f"`{name}` output does not name the backup: {output[:500]}"
        found += leaks(output, secrets, f"`{name}` output")
    assert canary in manifest, "the planted artifact name is not in the manifest"
    found += leaks(manifest, secrets, "the manifest")
    dumps = sorted(folder.rglob("*.dump"))
    assert folder / backup.DUMP in dumps, dumps
    for dump in dumps:
        sql = as_sql(dump, platform)
        if dump.name == backup.DUMP:
            assert canary in sql, "the planted param is not in the tracking database's dump"
        found += leaks(sql, secrets, f"{dump.name} as SQL")
    for path in folder.rglob("*"):
        if path.is_file():
            found += leaks(path.read_bytes().decode("latin-1"), secrets, str(path))
    assert found == [], found


@dataclass(frozen=True)
class Expect:
    """How one command must fail (or succeed): its exit code and a line it must print."""

    args: tuple[str, ...]
    code: int
    message: str
    stream: str = "stderr"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(self.args) + (" (with MLOPS_DB_URL)" if self.env else "")


def problems(
    result: subprocess.CompletedProcess[str], expect: Expect, secrets: dict[str, str]
) -> list[str]:
    """Why ``result`` is not the clean failure ``expect`` describes (empty: it is)."""
    out = result.stdout + result.stderr
    found = []
    if result.returncode != expect.code:
        found.append(f"{expect.name}: exit {result.returncode}, expected {expect.code}")
    if expect.message not in getattr(result, expect.stream):
        found.append(f"{expect.name}: no {expect.message!r} on {expect.stream}")
    if "Traceback" in out:
        found.append(f"{expect.name}: a traceback")
    if expect.code == 2 and expect.stream == "stderr":
        lines = result.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("error: "):
            found.append(f"{expect.name}: not one `error:` line: {result.stderr[-500:]!r}")
    return found + leaks(out, secrets, f"`{expect.name}` output")


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250", **env},  # wide: a table never cuts a value
        timeout=120,
        check=False,
    )


def test_errors_name_the_problem_without_the_secret(
    platform: Platform, scratch_folder: Callable[[str], Path]
) -> None:
    """Services that cannot be reached: each command fails with its message, no secret."""
    secrets = secrets_of(platform)
    db_port, s3_port = free_port(), free_port()
    broken = scratch_folder("mlops-secrets-env-")
    env_file = broken / ".env"
    env_file.write_text(
        platform.env_file.read_text()
        + f"MLOPS_DB_PORT={db_port}\nMLOPS_S3_PORT={s3_port}\nMLOPS_DB_WAIT_SECONDS=1\n"
    )
    no_db = f"error: cannot connect to the database at 127.0.0.1:{db_port}/"
    password = secrets["db_password"]
    url = {"MLOPS_DB_URL": f"postgresql://mlflow:{password}@127.0.0.1:{db_port}/mlflow"}
    expected = [
        Expect(("db", "status"), 2, no_db),
        Expect(("db", "indexes", "list"), 2, no_db),
        Expect(("s3", "diagnose", "--json"), 2, f"cannot connect to 127.0.0.1:{s3_port}", "stdout"),
        Expect(("doctor", "--json"), 2, "cannot connect to the database at", "stdout"),
        Expect(("backup", "create"), 2, no_db),
        # these need no service: they answer, with every secret redacted
        Expect(("config", "show", "--json"), 0, '"db_password": "********"', "stdout"),
        Expect(("config", "check"), 0, "OK: settings are complete and safe", "stdout"),
        # the password inline in a database URL: hidden in the message and the listing
        Expect(("db", "status"), 2, no_db, env=url),
        Expect(("config", "show"), 0, "postgresql://mlflow:********@127.0.0.1", "stdout", url),
    ]
    found = []
    for expect in expected:
        result = run([*CLI, "--env-file", str(env_file), *expect.args], expect.env)
        found += problems(result, expect, secrets)
    assert found == [], "\n".join(found)

    # The negative control: a command that exits 0 and says nothing fails the same check.
    silent = run([sys.executable, "-c", "pass"], {})
    control = problems(silent, expected[0], secrets)
    assert any("exit 0, expected 2" in p for p in control), control
    assert any("no 'error: cannot connect" in p for p in control), control
