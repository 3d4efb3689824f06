"""Documentation that is executed: the commands of docs/run-to-champion.md (sections 0 to
5), taken from the Markdown and run one by one, as written, against the shared stack.

```sh blocks must exit 0. In ```console blocks each `$ ` line is a command and the lines
under it its output: a shown `error:` line means exit 2 and that error, `rejected:` or
`kept the champion` exit 1 and that line, anything else exit 0 and the shown result line.
One substitution: the shared stack holds another test's `iris-classifier`, so the page's
model is registered under its own name here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Platform

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
            out = subprocess.run(
                ["bash", "-c", f"set -e; {command}; env"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            exported = dict(
                line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("MLFLOW_")
            )
            assert exported["MLFLOW_TRACKING_URI"] == platform.url
            env.update(exported)
            ran += 1
            continue
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
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
