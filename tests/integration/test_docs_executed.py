"""Documentation that is executed: the commands of docs/run-to-champion.md (sections 0 to
5), taken from the Markdown and run one by one, as written, against the shared stack; then
docs/backup.md's runbook and docs/troubleshooting.md's step-by-step failures on a stack of
their own (see the second half of this file).

```sh blocks must exit 0. In ```console blocks each `$ ` line is a command and the lines
under it its output: a shown `error:` line means exit 2 and that error, `rejected:` or
`kept the champion` exit 1 and that line, anything else exit 0 and the shown result line.
One substitution: the shared stack holds another test's `iris-classifier`, so the page's
model is registered under its own name here.

One module, because the runbook and troubleshooting tests share one module-scoped stack of
their own (`runbook`); split, each part would start its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Platform,
    down_later,
    make_stack_dir,
    require_binaries,
    write_env,
)
from tests.support import proc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "run-to-champion.md"
EXECUTED = ("0.", "1.", "2.", "3.", "4.", "5.")
# Lines of the page's outputs worth holding the command to (the rest: tables, ids, times).
RESULT = re.compile(r"^(error:|rejected:|promoted:|kept the champion|approved by)")


@dataclass
class Step:
    section: str
    command: str
    expected_exit: int
    expected: list[str]  # result lines the output must contain (normalised)


def page_steps(markdown: str) -> list[Step]:
    steps: list[Step] = []
    for section in re.split(r"^## ", markdown, flags=re.M)[1:]:
        title = section.splitlines()[0]
        if not title.startswith(EXECUTED):
            continue
        for kind, body in re.findall(r"```(sh|console)\n(.*?)```", section, re.S):
            if kind == "sh":
                for line in body.splitlines():
                    line = re.sub(r"\s+#.*$", "", line).strip()
                    if line and not line.startswith("#"):
                        steps.append(Step(title, line, 0, []))
                continue
            current: Step | None = None
            for line in body.splitlines():
                if line.startswith("$ "):
                    current = Step(title, line[2:].strip(), 0, [])
                    steps.append(current)
                elif current is not None and RESULT.match(line):
                    current.expected.append(line)
                    if line.startswith("error:"):
                        current.expected_exit = 2
                    elif line.startswith(("rejected:", "kept the champion")):
                        current.expected_exit = 1
    return steps


def result_key(line: str) -> str:
    """The part of a shown result line that must match: actor and scores may differ."""
    if line.startswith("approved by"):
        return "@staging " + line.split("@staging ", 1)[1] if "@staging " in line else line
    return re.split(r"[;(]| accuracy=", line)[0].strip()


def test_the_page_has_steps_and_gates_files_it_uses_exist() -> None:
    steps = page_steps(PAGE.read_text())
    commands = [s.command for s in steps]
    assert any("registry promote" in c for c in commands)
    assert [s.expected_exit for s in steps if "registry approve" in s.command] == [1, 2, 0, 0]
    for gates in re.findall(r"--gates (\S+)", " ".join(commands)):
        assert (REPO / gates).is_file(), f"the page uses {gates}, which is not in the repo"


def test_run_to_champion_as_written(platform: Platform, tmp_path: Path) -> None:
    model = f"iris-docs-{uuid.uuid4().hex[:6]}"
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    bin_dir = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLOPS_ENV_FILE": str(platform.env_file),
        "PATH": f"{bin_dir}:/usr/sbin:{os.environ.get('PATH', '')}",
    }
    skip = ("make up", "make install", ". .venv/bin/activate")
    ran = 0
    for step in page_steps(PAGE.read_text()):
        if step.command.startswith(skip):
            continue  # the shared stack is up; the suite's own environment is active
        command = step.command.replace("iris-classifier", model)
        if step.command.startswith("eval "):
            # The page's connect line, then the variables it set, for the next commands.
            out = proc.run(["bash", "-c", f"set -e; {command}; env"], env=env, cwd=tmp_path)
            assert out.returncode == 0, out.stderr
            exported = dict(
                line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("MLFLOW_")
            )
            assert exported["MLFLOW_TRACKING_URI"] == platform.url
            env.update(exported)
            ran += 1
            continue
        result = proc.run(["bash", "-c", command], env=env, cwd=tmp_path, timeout=600)
        shown = " ".join((result.stdout + "\n" + result.stderr).split())
        assert result.returncode == step.expected_exit, (
            f"§{step.section}: `{step.command}` exited {result.returncode}, the page shows "
            f"{step.expected_exit}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
        for line in step.expected:
            key = " ".join(result_key(line).replace("iris-classifier", model).split())
            assert key in shown, (
                f"§{step.section}: `{step.command}` did not print {key!r}:\n{shown[-2000:]}"
            )
        ran += 1
    assert ran >= 12


# -- the backup runbook and the troubleshooting scenarios ------------------------------
#
# docs/backup.md and docs/troubleshooting.md's step-by-step section, on a stack of their
# own (a restore replaces everything; the scenarios stop services). In their ```console
# blocks a `$ ` line is a command (a trailing `# exit N` comment: its exit code), the
# lines under it what it prints: text lines must appear in the output, `…` standing for
# anything (ports, paths, times) and line breaks free; a table (rich's box characters)
# must have as many rows as the one printed, each matching one of them cell by cell. An
# `error:` line means exit 2, `… (exit N)` exit N, nothing else exit 0. ```sh blocks
# must exit 0. Everything runs with COLUMNS=80, as in an 80-column terminal, and a
# command that prints a table may print no line wider and cut no cell off with `…`.

BACKUP_PAGE = REPO / "docs" / "backup.md"
TROUBLE_PAGE = REPO / "docs" / "troubleshooting.md"
SCENARIOS = "Step by step: three failures, diagnosed and fixed"
# Blocks of the backup page not run, by their first line, and why: a new command block
# on the page is run or named here.
NOT_RUN = {
    "sudo cp deploy/systemd/mlops-* /etc/systemd/system/": "systemd and sudo",
    "mlops-platform down                       # or: docker compose stop tracking": (
        "the KEK rotation: the operator's own passphrase and database URI"
    ),
}
TABLE_ROW = "│"
TABLE_RULE = tuple("┏┃┡└")


@dataclass
class Shown:
    command: str
    expected_exit: int
    lines: list[str]  # text lines the output must contain
    table: list[str]  # the table rows' lines, as printed


def shown_steps(section: str) -> list[Shown]:
    """The commands of a page section's ```sh and ```console blocks, in order."""
    steps: list[Shown] = []
    for kind, body in re.findall(r"```(sh|console)\n(.*?)```", section, re.S):
        if kind == "sh":
            for line in body.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    steps.append(Shown(line, 0, [], []))
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                command, _, comment = line[2:].partition(" #")
                said = re.match(r"\s*exit (\d)", comment)
                steps.append(Shown(command.strip(), int(said[1]) if said else 0, [], []))
            elif line.startswith(TABLE_ROW):
                steps[-1].table.append(line)
            elif line.strip() and not line.startswith(TABLE_RULE):
                steps[-1].lines.append(line)
                exit_shown = re.search(r"\(exit (\d)\)", line)
                if line.startswith("error:"):
                    steps[-1].expected_exit = 2
                elif exit_shown:
                    steps[-1].expected_exit = int(exit_shown[1])
    return steps


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _pattern(shown: str) -> str:
    """A shown line as a pattern: whitespace free (the terminal wraps), `…` any text."""
    return ".*?".join(re.escape(part) for part in _squash(shown).split("…"))


def table_rows(lines: list[str]) -> list[list[str]]:
    """A rich table's rows, each cell's wrapped lines joined (a row's first line is the
    one whose first cell is not empty)."""
    rows: list[list[str]] = []
    for line in lines:
        line = line.rstrip()
        if not line.startswith(TABLE_ROW):
            continue
        cells = [c.strip() for c in line.strip(TABLE_ROW).split(TABLE_ROW)]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def check_output(step: Shown, result: subprocess.CompletedProcess[str], where: str) -> None:
    out = result.stdout + "\n" + result.stderr
    if table_rows(result.stdout.splitlines()):
        # A table in an 80-column terminal: no line wider, no cell cut off with an ellipsis.
        wide = [line for line in result.stdout.splitlines() if len(line) > 80]
        assert not wide, f"{where}: `{step.command}` printed lines over 80 columns:\n" + (
            "\n".join(wide)
        )
        assert "…" not in result.stdout, f"{where}: `{step.command}` cut a cell off:\n{out}"
    assert result.returncode == step.expected_exit, (
        f"{where}: `{step.command}` exited {result.returncode}, the page shows "
        f"{step.expected_exit}:\n{out[-3000:]}"
    )
    for line in step.lines:
        assert re.search(_pattern(line), _squash(out), re.S), (
            f"{where}: `{step.command}` did not print {line!r}:\n{out[-3000:]}"
        )
    if step.table:
        printed = table_rows(result.stdout.splitlines())
        for row in table_rows(step.table):
            match = [
                got
                for got in printed
                if len(got) == len(row)
                and all(
                    re.fullmatch(_pattern(s), _squash(g), re.S)
                    for s, g in zip(row, got, strict=True)
                )
            ]
            assert match, f"{where}: `{step.command}` printed no row like {row}:\n{out[-3000:]}"
        assert len(printed) == len(table_rows(step.table)), (
            f"{where}: `{step.command}` printed {len(printed)} rows, the page "
            f"{len(table_rows(step.table))}:\n{result.stdout[-3000:]}"
        )


def page_section(markdown: str, heading: str, level: str = "##") -> str:
    match = re.search(
        rf"^{level} {re.escape(heading)}\n(.*?)(?=^#{{2,{len(level)}}} |\Z)", markdown, re.M | re.S
    )
    assert match, f"no section {heading!r}"
    return match.group(1)


@dataclass
class Runbook:
    """A stack of this module's own, and how the pages' commands are run against it."""

    stack: Platform
    env: dict[str, str]

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return proc.run(
            ["bash", "-c", command],
            env=self.env,
            cwd=self.stack.root,  # the folder of the .env, as the pages say
            timeout=timeout,
            errors="replace",
        )

    def run_page(self, steps: list[Shown], where: str) -> int:
        for step in steps:
            check_output(step, self.run(step.command), where)
        return len(steps)

    def pid(self, service: str) -> int:
        state = json.loads((self.stack.settings.state_dir / "state.json").read_text())
        return int(state["services"][service]["pid"])


@pytest.fixture(scope="module")
def runbook() -> Iterator[Runbook]:
    require_binaries()
    root = make_stack_dir("mlops-runbook-")
    env_file = write_env(root)
    stack = Platform.configured(root, env_file)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FORCE_COLOR"))},
        "MLOPS_ENV_FILE": str(env_file),
        "XDG_CONFIG_HOME": str(root / "config"),  # `up` remembers the env file there
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:{os.environ.get('PATH', '')}",
        "COLUMNS": "80",
        "NO_COLOR": "1",
    }
    try:
        up = stack.cli("up", "--json", env=env, timeout=600)
        stack.url = json.loads(up.stdout)["url"]
        yield Runbook(stack, env)
    finally:
        down_later(env_file, env=env, remove=root)


def _stop(runbook: Runbook, service: str) -> None:
    """Stop one service of the runbook's stack behind the kit's back (a crash)."""
    pid = runbook.pid(service)
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{service} (pid {pid}) did not stop")


def _wrong_password(runbook: Runbook) -> None:
    """`.env` edited under a running stack: its password no longer the proxy's."""
    env_file = runbook.stack.env_file
    new = "An0ther-passw0rd-" + uuid.uuid4().hex[:8]
    env_file.write_text(
        re.sub(
            r"(?m)^MLOPS_PROXY_PASSWORD=.*$", f"MLOPS_PROXY_PASSWORD={new}", env_file.read_text()
        )
    )


FAULTS = {
    "The proxy refuses the configured user (401)": _wrong_password,
    "502 Bad Gateway: the tracking server is down": lambda rb: _stop(rb, "tracking"),
    "The artifact store is down": lambda rb: _stop(rb, "seaweedfs"),
}


def test_every_scenario_on_the_troubleshooting_page_has_its_fault() -> None:
    section = page_section(TROUBLE_PAGE.read_text(), SCENARIOS)
    headings = re.findall(r"^### (.+)$", section, re.M)
    assert headings == list(FAULTS), "a scenario without a fault in FAULTS (or the reverse)"
    for heading in headings:
        steps = shown_steps(page_section(section, heading, "###"))
        assert steps[0].expected_exit == 2 and steps[0].table, heading  # the fault, found
        assert steps[-1].lines == ["healthy (exit 0) in …s"], heading  # then fixed


@pytest.mark.parametrize("heading", list(FAULTS))
def test_troubleshooting_scenario_as_written(runbook: Runbook, heading: str) -> None:
    """The fault made, then the page's commands one by one: the doctor finds it with the
    fix the page shows, and the page's fix makes it healthy."""
    section = page_section(page_section(TROUBLE_PAGE.read_text(), SCENARIOS), heading, "###")
    before = runbook.stack.env_file.read_text()
    FAULTS[heading](runbook)
    try:
        assert runbook.run_page(shown_steps(section), heading) >= 3
    finally:
        if runbook.stack.env_file.read_text() != before:
            runbook.stack.env_file.write_text(before)
        repaired = runbook.run("mlops-platform up")  # whatever the page left undone
        assert repaired.returncode == 0, repaired.stderr


def test_backup_runbook_as_written(runbook: Runbook) -> None:
    """docs/backup.md's blocks in order, on a platform holding a run with an artifact."""
    client = runbook.run(
        'eval "$(mlops-platform client-env)" && python -c \''
        'import mlflow; mlflow.set_experiment("runbook"); r = mlflow.start_run(); '
        'mlflow.log_metric("m", 1.0); mlflow.log_text("hello", "notes/hello.txt"); '
        "mlflow.end_run()'"
    )
    assert client.returncode == 0, client.stderr
    page = BACKUP_PAGE.read_text()
    skipped = [
        body.strip().splitlines()[0]
        for kind, body in re.findall(r"```(\w*)\n(.*?)```", page, re.S)
        if kind not in ("sh", "console") and body.strip().startswith(("mlops-platform", "sudo"))
    ]
    assert sorted(skipped) == sorted(NOT_RUN), "a command block the test does not run"
    ran = 0
    for section in re.split(r"^## ", page, flags=re.M)[1:]:
        ran += runbook.run_page(shown_steps(section), f"backup.md §{section.splitlines()[0]}")
    assert ran >= 14


def test_the_pages_run_doctor_status_and_backup_list() -> None:
    """The 80-column check (check_output: no line wider, no cell cut off) sees the tables
    of doctor (every row), status and backup list, run by the pages above."""
    run = {
        step.command
        for page in (BACKUP_PAGE, TROUBLE_PAGE)
        for section in re.split(r"^## ", page.read_text(), flags=re.M)[1:]
        for step in shown_steps(section)
    }
    assert {"mlops-platform doctor", "mlops-platform status", "mlops-platform backup list"} <= run


# -- run-to-champion §7: the payloads a served model accepts ---------------------------
# Run by tests/integration/test_serving.py, which serves a model (the costly part).


def invocation_calls(markdown: str) -> list[tuple[str, str]]:
    """§7's console blocks: each `$ curl` (its indented continuation lines included) and
    the answer the page shows under it."""
    section = page_section(markdown, "7. Call `/invocations`")
    calls: list[tuple[str, str]] = []
    for body in re.findall(r"```console\n(.*?)```", section, re.S):
        command: list[str] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                command = [line[2:]]
            elif command and line[:1].isspace():
                command.append(line)
            elif command and line.strip():
                calls.append(("\n".join(command), line))
                command = []
    return calls


def check_invocations(url: str) -> int:
    """Every call of §7, as written but at URL, answers what the page shows."""
    calls = invocation_calls(PAGE.read_text())
    for command, shown in calls:
        assert "localhost:5001" in command, command
        got = proc.run(
            ["bash", "-c", command.replace("localhost:5001", url.removeprefix("http://"))]
        )
        assert got.returncode == 0, got.stderr
        assert re.fullmatch(_pattern(shown), _squash(got.stdout), re.S), (
            f"the page shows {shown!r} for\n{command}\nthe served model answered {got.stdout!r}"
        )
    return len(calls)
