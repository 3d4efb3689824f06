"""The first day: where the data goes, which env file a command reads, the SSE key, the
exit-code contract, and what `client-env` prints when it cannot help. No processes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import mlops_platform.settings as settings_module
from mlops_platform.bootstrap import generate_secrets, init_env_file
from mlops_platform.cli import app, main
from mlops_platform.errors import ConfigError
from mlops_platform.settings import (
    closest_setting,
    find_env_file,
    load_settings,
    remember_env_file,
    resolve_state_dir,
    unknown_variables,
)
from mlops_platform.stack.seaweedfs import (
    KeyState,
    kek_fingerprint,
    key_state,
    security_toml,
    weed_argv,
)
from mlops_platform.stack.weed_sockets import grpc_sockets, remove_stale_sockets
from tests.conftest import clear_mlops_env

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_mlops_env(monkeypatch)
    monkeypatch.setenv("MLOPS_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# -- where the data lives ---------------------------------------------------------------


def test_root_defaults_to_the_system_folder_an_ordinary_user_to_the_project(
    isolated: Path,
) -> None:
    env_file = isolated / ".env"
    env_file.write_text("MLOPS_ENV=dev\n")
    assert resolve_state_dir(None, env_file, as_root=True) == settings_module.SYSTEM_STATE_DIR
    assert resolve_state_dir(None, env_file, as_root=False) == isolated / ".mlops-platform"
    # The suite points SYSTEM_STATE_DIR at a temporary folder; the real one is this:
    source = Path(settings_module.__file__).read_text()
    assert 'SYSTEM_STATE_DIR = Path("/var/lib/mlops-platform")' in source


def test_an_existing_state_folder_keeps_working_as_root(isolated: Path) -> None:
    env_file = isolated / ".env"
    env_file.write_text("MLOPS_ENV=dev\n")
    (isolated / ".mlops-platform").mkdir()
    assert resolve_state_dir(None, env_file, as_root=True) == isolated / ".mlops-platform"


def test_a_set_state_dir_wins_and_is_relative_to_the_env_file(
    isolated: Path, tmp_path: Path
) -> None:
    env_file = isolated / ".env"
    env_file.write_text("MLOPS_ENV=dev\nMLOPS_STATE_DIR=data\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    assert load_settings(env_file, check=False).state_dir == isolated / "data"
    assert resolve_state_dir(Path("/srv/x"), env_file, as_root=True) == Path("/srv/x")


def test_loaded_settings_use_the_default_rule(isolated: Path) -> None:
    env_file = isolated / ".env"
    env_file.write_text("MLOPS_ENV=dev\n")
    expected = (
        settings_module.SYSTEM_STATE_DIR if os.geteuid() == 0 else isolated / ".mlops-platform"
    )
    assert load_settings(env_file, check=False).state_dir == expected


# -- which env file -----------------------------------------------------------------------


def test_env_file_order(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_env_file().how == "none"
    remembered = tmp_path / "platform" / ".env"
    remembered.parent.mkdir()
    remembered.write_text("MLOPS_ENV=dev\n")
    assert remember_env_file(remembered) == tmp_path / "config" / "mlops-platform" / "env-file"
    assert find_env_file() == settings_module.EnvFileChoice(remembered, "remembered")
    (isolated / ".env").write_text("MLOPS_ENV=dev\n")
    assert find_env_file().how == "cwd"
    monkeypatch.setenv("MLOPS_ENV_FILE", str(tmp_path / "var.env"))
    assert find_env_file().how == "variable"
    assert find_env_file(Path("given.env")) == settings_module.EnvFileChoice(
        Path("given.env"), "option"
    )


def test_a_remembered_file_that_is_gone_is_not_used(isolated: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone" / ".env"
    gone.parent.mkdir()
    gone.write_text("x=1\n")
    remember_env_file(gone)
    gone.unlink()
    assert find_env_file().how == "none"


def test_init_remembers_and_status_from_another_folder_reads_it(
    isolated: Path, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    other = tmp_path / "training"
    other.mkdir()
    os.chdir(other)
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"env": "prod"' in shown.output  # the remembered file's values, not defaults


def test_no_env_file_is_one_line_naming_it_not_run_init(isolated: Path) -> None:
    result = runner.invoke(app, ["status"])
    assert isinstance(result.exception, ConfigError)  # main() prints it, exit 2
    assert result.exception.exit_code == 2
    message = str(result.exception)
    assert "no env file" in message and "--env-file" in message
    assert "MLOPS_ENV_FILE" in message


def test_client_env_without_env_file_makes_eval_fail(isolated: Path) -> None:
    result = runner.invoke(app, ["client-env"])
    assert isinstance(result.exception, ConfigError)  # main() prints it, exit 2
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "false"
    assert not any(line.startswith("export MLFLOW_TRACKING_USERNAME") for line in lines)
    assert "MLFLOW_TRACKING_URI=client-env-failed://" in result.stdout


def test_settings_from_the_environment_alone_need_no_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container: every secret as MLOPS_* and no .env anywhere."""
    for name, value in generate_secrets().items():
        monkeypatch.setenv(f"MLOPS_{name.upper()}", value)
    result = runner.invoke(app, ["client-env", "--json"])
    assert result.exit_code == 0, result.output


# -- config check ----------------------------------------------------------------------------


def test_config_check_names_the_closest_setting(isolated: Path) -> None:
    runner.invoke(app, ["init"])
    with (isolated / ".env").open("a") as out:
        out.write("MLOPS_PROXY_PASWORD=x\nMLOPS_WHATEVER=1\n")
    result = runner.invoke(app, ["config", "check"])
    assert "MLOPS_PROXY_PASWORD is not a setting (did you mean MLOPS_PROXY_PASSWORD?)" in (
        result.output
    )
    assert "MLOPS_WHATEVER is not a setting (a typo?)" in result.output
    assert closest_setting("MLOPS_STATEDIR") == "MLOPS_STATE_DIR"
    assert unknown_variables(isolated / ".env") == ["MLOPS_PROXY_PASWORD", "MLOPS_WHATEVER"]


# -- the SeaweedFS SSE key -------------------------------------------------------------------


def test_init_generates_the_sse_key_and_adds_it_to_an_older_file(isolated: Path) -> None:
    env_file = isolated / ".env"
    init_env_file(env_file)
    kek = load_settings(env_file).s3_sse_kek.get_secret_value()
    assert re.fullmatch(r"[0-9a-f]{64}", kek)
    older = "\n".join(
        line for line in env_file.read_text().splitlines() if "S3_SSE_KEK" not in line
    )
    env_file.write_text(older + "\n")
    result = init_env_file(env_file)
    assert "MLOPS_S3_SSE_KEK" in result.added


def test_a_malformed_sse_key_is_refused(isolated: Path) -> None:
    env_file = isolated / ".env"
    env_file.write_text("MLOPS_ENV=dev\nMLOPS_S3_SSE_KEK=not-hex\n")
    with pytest.raises(ConfigError, match="MLOPS_S3_SSE_KEK: must be 64 hex") as refused:
        load_settings(env_file, check=False)
    assert "not-hex" not in str(refused.value)  # a secret is never echoed


def test_security_toml_carries_the_sse_key_and_weed_exits_promptly() -> None:
    kek = "ab" * 32
    text = security_toml({s: "k" for s in _jwt_sections()}, None, kek)
    assert f'[s3.sse]\nkek = "{kek}"' in text
    assert "[s3.sse]" not in security_toml({s: "k" for s in _jwt_sections()}, None, None)
    argv = weed_argv(
        "weed", Path("/d"), Path("/c"), 1, {"master": 2, "volume": 3, "filer": 4, "s3_grpc": 5}
    )
    assert "-volume.preStopSeconds=0" in argv
    assert argv.index("-logtostderr=true") < argv.index("server")  # a flag of weed's own


def test_weeds_tmp_sockets_are_named_after_its_grpc_ports() -> None:
    ports = {"master": 2, "volume": 3, "filer": 4, "s3_grpc": 5}
    assert [str(p) for p in grpc_sockets(ports)] == [
        "/tmp/seaweedfs-master-grpc-10002.sock",
        "/tmp/seaweedfs-volume-grpc-10003.sock",
        "/tmp/seaweedfs-filer-grpc-10004.sock",
        "/tmp/seaweedfs-s3-grpc-5.sock",
    ]
    assert grpc_sockets({}) == []


@pytest.fixture
def socket_folder() -> Iterator[Path]:
    """A folder with a path short enough for AF_UNIX (pytest's tmp_path may not be),
    removed afterwards whatever the test left in it."""
    folder = Path(tempfile.mkdtemp(prefix="sock-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_only_stale_sockets_are_removed(socket_folder: Path) -> None:
    """A socket nobody listens on goes; a live one, a plain file and a missing path stay."""
    folder = socket_folder
    stale, live, plain = folder / "stale.sock", folder / "live.sock", folder / "plain.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(stale))  # closed without unlinking, as a killed weed leaves it
    plain.write_text("not a socket")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(live))
        listening.listen(1)
        removed = remove_stale_sockets([stale, live, plain, folder / "missing.sock"])
        assert removed == [stale] and not stale.exists()
        assert live.exists() and plain.exists()


def test_a_socket_that_closes_within_the_settling_time_is_removed(socket_folder: Path) -> None:
    """weed's leader can be gone a moment before its sockets close: asked again, then gone."""
    closing = socket_folder / "closing.sock"
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(closing))
    listening.listen(1)
    timer = threading.Timer(0.3, listening.close)
    timer.start()
    try:
        assert remove_stale_sockets([closing], settle=5.0) == [closing]
        assert not closing.exists()
    finally:
        timer.join()


def _jwt_sections() -> tuple[str, ...]:
    from mlops_platform.stack.seaweedfs import JWT_SECTIONS

    return JWT_SECTIONS


def test_key_state_names_a_lost_a_changed_and_a_stale_key() -> None:
    a, b = kek_fingerprint("aa" * 32), kek_fingerprint("bb" * 32)
    assert a != b and len(a) == 16 and "aa" * 8 not in a
    assert KeyState(a, a, a).problem is None
    assert KeyState(a, None, None).problem is None  # first start under this key
    assert KeyState(None, None, None).problem is None  # no key, nothing encrypted
    lost = KeyState(None, a, None).problem
    assert lost and "MLOPS_S3_SSE_KEK is not set" in lost and a in lost
    changed = KeyState(b, a, None).problem
    assert changed and "MLOPS_S3_SSE_KEK changed" in changed and a in changed
    stale = KeyState(a, a, b).problem
    assert stale and "edited after `up`" in stale


def test_key_state_reads_the_record_of_the_state_folder(isolated: Path) -> None:
    env_file = isolated / ".env"
    init_env_file(env_file, values={"state_dir": str(isolated / "state")})
    settings = load_settings(env_file)
    record = isolated / "state" / "seaweedfs" / "sse_kek.fingerprint"
    record.parent.mkdir(parents=True)
    record.write_text("0123456789abcdef\n")
    assert key_state(settings).stored == "0123456789abcdef"
    assert key_state(settings).problem  # the env file's key is another one


# -- the exit-code contract -------------------------------------------------------------


def test_an_answered_no_is_a_refusal_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def aborts(*args: object, **kwargs: object) -> None:
        raise typer.Abort()

    monkeypatch.setattr("mlops_platform.cli.app", aborts)
    monkeypatch.setattr(sys, "argv", ["mlops-platform", "backup", "prune"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert "not confirmed" in capsys.readouterr().err


def test_operations_doc_states_the_contract() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = doc.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for needle in ("| 0 |", "| 1 |", "| 2 |", "answered no", "--yes"):
        assert needle in section


def test_no_such_backup_lists_the_newest_first(isolated: Path) -> None:
    from mlops_platform import backup

    env_file = isolated / ".env"
    init_env_file(env_file, values={"backup_dir": str(isolated / "backups")})
    settings = load_settings(env_file)
    for name in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z", "20260104T000000Z"):
        (isolated / "backups" / name).mkdir(parents=True)
        (isolated / "backups" / name / backup.MANIFEST).write_text("{}")
    with pytest.raises(backup.BackupNotFoundError) as missing:
        backup.find_backup(settings, "20250101T000000Z")
    assert "(newest: 20260104T000000Z, 20260103T000000Z, 20260102T000000Z)" in str(missing.value)


def test_init_as_root_writes_the_system_state_folder_down_for_compose(isolated: Path) -> None:
    """compose mounts ${MLOPS_STATE_DIR:-.mlops-platform}: it must find init's htpasswd."""
    assert runner.invoke(app, ["init"]).exit_code == 0
    text = (isolated / ".env").read_text()
    settings = load_settings(isolated / ".env")
    if os.geteuid() == 0:
        assert f"\nMLOPS_STATE_DIR={settings_module.system_state_dir()}\n" in text
        assert settings.users_file == settings_module.system_state_dir() / "htpasswd"
    else:
        assert "\nMLOPS_STATE_DIR=" not in text
    assert settings.users_file.is_file()
