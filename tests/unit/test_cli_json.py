"""`--json`: one object on stdout, `{"ok": <exit code is 0>, ...}`, printed one way only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mlops_platform.cli import app, main
from mlops_platform.cli.common import emit, json_requested

CLI_DIR = Path(__file__).resolve().parents[2] / "src" / "mlops_platform" / "cli"
runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(cli_home: Path) -> Path:
    return cli_home


def test_emit_puts_ok_first_and_derives_it_from_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit({"backups": [{"id": "a"}], "kept": 1})
    assert list(json.loads(capsys.readouterr().out)) == ["ok", "backups", "kept"]
    with pytest.raises(typer.Exit) as exited:
        emit({"problems": ["x"]}, exit_code=2)
    assert exited.value.exit_code == 2
    assert json.loads(capsys.readouterr().out) == {"ok": False, "problems": ["x"]}


def test_emit_refuses_fields_that_redefine_ok_or_error(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"id": "b", "ok": True})  # a result's own ok that agrees is kept once
    assert json.loads(capsys.readouterr().out) == {"ok": True, "id": "b"}
    with pytest.raises(ValueError, match="redefine"):
        emit({"ok": True}, exit_code=1)
    with pytest.raises(ValueError, match="redefine"):
        emit({"error": "x"})
    assert capsys.readouterr().out == ""


def test_json_requested_reads_options_before_a_double_dash() -> None:
    assert json_requested(["backup", "list", "--json"])
    assert not json_requested(["backup", "list"])
    assert not json_requested(["bench", "--", "--json"])


def test_only_common_prints_json() -> None:
    """Every --json goes through cli.common.emit: no other cli module touches `json`."""
    offenders = []
    for path in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and path.name != "common.py":
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                if "json" in names or module == "json" or "print_json" in names:
                    offenders.append(f"{path.name}:{node.lineno} imports json")
            if isinstance(node, ast.FunctionDef) and path.name == "common.py":
                calls = [
                    n
                    for n in ast.walk(node)
                    if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name)
                    and n.value.id == "json"
                ]
                if calls and node.name not in ("emit", "emit_error"):
                    offenders.append(f"common.py:{node.lineno} {node.name} uses json")
    assert offenders == []


def test_a_command_prints_one_object_with_ok(isolated: Path) -> None:
    runner.invoke(app, ["init"])
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0
    report = json.loads(shown.output)
    assert report["ok"] is True and report["settings"]["db_password"] == "********"
    (isolated / ".env").write_text("MLOPS_DB_PASSWORD=changethis\n")
    checked = runner.invoke(app, ["config", "check", "--json"])
    assert checked.exit_code == 2
    assert json.loads(checked.output)["ok"] is False


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["mlops-platform", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize(
    "args",
    [
        ["up", "--json"],  # a refusal: bad settings (PlatformError)
        ["backup", "list", "--json", "--nope"],  # a usage error
    ],
)
def test_a_refusal_under_json_is_one_object_too(
    args: list[str],
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (isolated / ".env").write_text("MLOPS_SERVER_PORT=abc\n")
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert json.loads(out) == {"ok": False, "error": err.removeprefix("error: ").strip()}


def test_a_refusal_without_json_leaves_stdout_empty(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / ".env").write_text("MLOPS_SERVER_PORT=abc\n")
    code, out, err = run_main(["up"], monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert "MLOPS_SERVER_PORT" in err


def test_a_command_that_printed_its_object_prints_no_second(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / ".env").write_text("MLOPS_DB_PASSWORD=changethis\n")
    code, out, _ = run_main(["config", "check", "--json"], monkeypatch, capsys)
    assert code == 2
    assert json.loads(out)["ok"] is False  # one object: json.loads refuses two


def test_bench_json_is_a_flag_and_the_file_is_output(capsys: pytest.CaptureFixture[str]) -> None:
    """`bench --json` like every --json; the figures' file is `--output FILE`. Refused
    before anything starts (an unknown --skip part), it still prints one object."""
    from benchmarks.harness import main as bench

    with pytest.raises(SystemExit) as exited:
        bench(["--json", "--output", "figures.json", "--skip", "nope"])
    captured = capsys.readouterr()
    assert exited.value.code == 2
    line = captured.err.removeprefix("error: ").strip()
    assert "--skip: unknown part(s) nope" in line
    assert json.loads(captured.out) == {"ok": False, "error": line}
    with pytest.raises(SystemExit):
        bench(["--json", "figures.json"])  # the old form: a file after --json is refused
    assert "unrecognized arguments: figures.json" in capsys.readouterr().err
