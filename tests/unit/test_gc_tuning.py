"""The collector's young threshold is raised for the kit's processes, never lowered."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mlops_platform import gc_tuning


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((700, 10, 10), (gc_tuning.YOUNG, 10, 10)),  # CPython's default: raised
        ((100_000, 5, 5), (100_000, 5, 5)),  # already higher: kept
        ((0, 10, 10), (0, 10, 10)),  # collection turned off on purpose: kept
    ],
)
def test_tune_raises_only_the_young_threshold(
    thresholds: None, before: tuple[int, int, int], after: tuple[int, int, int]
) -> None:
    gc.set_threshold(*before)
    gc_tuning.tune()
    assert gc.get_threshold() == after


@pytest.mark.parametrize(
    "code",
    [
        # Every CLI command.
        "import sys; sys.argv = ['mlops-platform', '--version']\n"
        "from mlops_platform.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n",
        # The tracking server's app factory, in each uvicorn worker.
        "from mlops_platform.artifact_stream import create_default_app\n"
        "try:\n    create_default_app()\nexcept Exception:\n    pass\n",
    ],
    ids=["cli", "server-app"],
)
def test_the_kit_processes_run_with_it(code: str) -> None:
    probe = code + "import gc, sys; print(gc.get_threshold()[0], file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stderr.strip().splitlines()[-1] == str(gc_tuning.YOUNG), done.stderr[-2000:]
