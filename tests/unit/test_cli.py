"""The CLI in-process: init, config show/check, and how errors look."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from mlops_platform.cli import app, main
from mlops_platform.render import htpasswd
from mlops_platform.settings import load_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(cli_home: Path) -> Path:
    return cli_home


def test_init_writes_strong_private_secrets(isolated: Path) -> None:
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    env_file = isolated / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(env_file)  # passes every safety check
    password = settings.proxy_password.get_secret_value()
    assert len(password) == 32
    for secret in (password, settings.db_password.get_secret_value()):
        assert secret not in result.output
    users = htpasswd.parse(settings.users_file.read_text())
    assert htpasswd.verify(users["admin"], password)
    assert password not in settings.users_file.read_text()


def test_init_never_overwrites_without_force(isolated: Path) -> None:
    runner.invoke(app, ["init"])
    before = (isolated / ".env").read_text()
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 0
    assert "left unchanged" in again.output
    assert (isolated / ".env").read_text() == before
    forced = runner.invoke(app, ["init", "--force"])
    assert forced.exit_code == 0
    assert (isolated / ".env").read_text() != before


def test_config_show_redacts(isolated: Path) -> None:
    runner.invoke(app, ["init"])
    settings = load_settings(isolated / ".env")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.output)["settings"]
    assert shown["db_password"] == "********"
    assert settings.db_password.get_secret_value() not in result.output


def test_config_check_lists_every_problem(isolated: Path) -> None:
    (isolated / ".env").write_text(
        "MLOPS_DB_PASSWORD=changethis\nMLOPS_PROXY_PASSWORD=short\nMLOPS_PROXY_PRT=1\n"
    )
    result = runner.invoke(app, ["config", "check", "--json"])
    assert result.exit_code == 2
    report = json.loads(result.output)
    text = " ".join(report["problems"])
    for var in (
        "MLOPS_DB_PASSWORD",
        "MLOPS_PROXY_PASSWORD",
        "MLOPS_S3_SECRET_ACCESS_KEY",
        "MLOPS_FLASK_SECRET_KEY",
    ):
        assert var in text
    assert report["warnings"] == [
        "MLOPS_PROXY_PRT is not a setting (did you mean MLOPS_PROXY_PORT?)"
    ]


def test_config_check_ok_after_init(isolated: Path) -> None:
    runner.invoke(app, ["init"])
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0
    assert "OK" in result.output


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", ["mlops-platform", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.err + captured.out


@pytest.mark.parametrize(
    ("env_text", "args", "expected"),
    [
        ("MLOPS_SERVER_PORT=abc\n", ["up"], "MLOPS_SERVER_PORT"),
        ("MLOPS_DB_URL=mysql://x/y\n", ["serve"], "MLOPS_DB_URL"),
        ("", ["client-env"], "MLOPS_PROXY_PASSWORD is empty or a placeholder"),
        ("MLOPS_ENV=staging\n", ["up"], "MLOPS_ENV"),
    ],
)
def test_bad_settings_are_one_line_errors(
    env_text: str,
    args: list[str],
    expected: str,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (isolated / ".env").write_text(env_text)
    code, output = run_main(args, monkeypatch, capsys)
    assert code == 2
    assert expected in output
    assert "Traceback" not in output
    assert output.startswith("error: ")
    assert not (isolated / ".mlops-platform").exists()  # refused before touching anything


def test_env_file_that_is_a_directory(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "dir.env").mkdir()
    code, output = run_main(["--env-file", "dir.env", "config", "show"], monkeypatch, capsys)
    assert code == 2
    assert "is not a file" in output


# -- a command line loads only its own command module ------------------------------------


def _words(root: typer.Typer) -> list[str]:
    return list(typer.main.get_command(root).commands)  # type: ignore[attr-defined]


def test_words_name_exactly_what_each_module_registers() -> None:
    from mlops_platform import cli

    registered = {m: _words(cli.build((m,))) for m in cli.MODULES}
    assert {w: m for m, words in registered.items() for w in words} == cli.WORDS
    # the whole CLI is the same, in the same order, whichever way it is built
    assert _words(app) == _words(cli.build())


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (["registry", "approve", "m", "1"], ("registry",)),
        (["--env-file", "x.env", "up", "--json"], ("stack",)),
        (["--env-file=x.env", "client-env"], ("stack",)),
        (["--help"], None),
        (["--version"], None),
        ([], None),
        (["no-such-command"], None),
    ],
)
def test_modules_for_a_command_line(argv: list[str], modules: tuple[str, ...] | None) -> None:
    from mlops_platform import cli

    assert cli.modules_for(argv) == (modules or cli.MODULES)


def test_a_registry_command_does_not_import_the_backup_database_and_s3_code() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['mlops-platform', 'registry', 'history', '--help']\n"
        "from mlops_platform.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in ('mlops_platform.backup', 'sqlalchemy', 'boto3',"
        " 'mlops_platform.cli.backup') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "history" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]", done.stdout
