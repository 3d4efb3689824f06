"""``mlflow server`` whose uvicorn runs through :mod:`mlops_platform.uvicorn_nodelay`.

MLflow starts uvicorn as ``python -m uvicorn ...``; this entry point runs MLflow's own
CLI unchanged except that the command names the kit's patched runner instead. If a
future MLflow builds its command differently, the server still starts, without the
fix, and says so on stderr.

    python -m mlops_platform.mlflow_server server <mlflow server arguments>
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

RUNNER = "mlops_platform.uvicorn_nodelay"


def swap_runner(command: list[str]) -> list[str] | None:
    """``[python, -m, uvicorn, ...]`` -> ``[python, -m, RUNNER, ...]``; None if not that shape."""
    for i in range(len(command) - 1):
        if command[i] == "-m" and command[i + 1] == "uvicorn":
            return [*command[: i + 1], RUNNER, *command[i + 2 :]]
    return None


def install() -> bool:
    import mlflow.server as server

    original: Callable[..., list[str]] | None = getattr(server, "_build_uvicorn_command", None)
    if original is None:
        return False

    def build(*args: Any, **kwargs: Any) -> list[str]:
        command = original(*args, **kwargs)
        swapped = swap_runner(command)
        if swapped is None:
            print(
                "mlops-platform: uvicorn command not recognised; TCP_NODELAY fix not applied",
                file=sys.stderr,
            )
            return command
        return swapped

    server._build_uvicorn_command = build  # type: ignore[attr-defined]
    return True


def main() -> None:
    if not install():
        print(
            "mlops-platform: this MLflow has no _build_uvicorn_command; TCP_NODELAY fix "
            "not applied",
            file=sys.stderr,
        )
    from mlflow.cli import cli

    cli(prog_name="mlflow")


if __name__ == "__main__":
    main()
