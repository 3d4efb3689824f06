"""``mlflow server`` with the kit's two changes to the uvicorn command MLflow builds.

MLflow starts uvicorn as ``python -m uvicorn ... <app>``; this entry point runs MLflow's
own CLI unchanged except that the command

- names the kit's patched runner (:mod:`mlops_platform.uvicorn_nodelay`) instead of
  uvicorn, unless ``--no-tcp-nodelay`` comes first;
- names the app factory of :mod:`mlops_platform.artifact_stream` (MLflow's app, the
  same with permissions, with artifact downloads streamed) instead of MLflow's app.

If a future MLflow builds its command differently, the server still starts, without
the change, and says so on stderr.

    python -m mlops_platform.mlflow_server [--no-tcp-nodelay] server <mlflow server arguments>

``mlops-platform serve`` calls :func:`main` in its own process (``serve.run_server``).
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


NO_NODELAY = "--no-tcp-nodelay"


def rewrite(command: list[str], *, nodelay: bool = True) -> list[str]:
    """The uvicorn command with the kit's runner and app; unchanged parts said on stderr."""
    from mlops_platform.artifact_stream import swap_target

    if nodelay:
        swapped = swap_runner(command)
        if swapped is None:
            print(
                "mlops-platform: uvicorn command not recognised; TCP_NODELAY fix not applied",
                file=sys.stderr,
            )
        else:
            command = swapped
    streamed = swap_target(command)
    if streamed is None:
        print(
            "mlops-platform: MLflow's app not recognised; artifact downloads not streamed",
            file=sys.stderr,
        )
        return command
    return streamed


def install(*, nodelay: bool = True) -> bool:
    import mlflow.server as server

    original: Callable[..., list[str]] | None = getattr(server, "_build_uvicorn_command", None)
    if original is None:
        return False

    def build(*args: Any, **kwargs: Any) -> list[str]:
        return rewrite(original(*args, **kwargs), nodelay=nodelay)

    server._build_uvicorn_command = build  # type: ignore[attr-defined]
    return True


def main(args: list[str] | None = None) -> None:
    """MLflow's CLI on ARGS (default: this process's arguments), with the kit's changes."""
    args = sys.argv[1:] if args is None else list(args)
    nodelay = NO_NODELAY not in args[:1]
    if not nodelay:
        args = args[1:]
    if not install(nodelay=nodelay):
        print(
            "mlops-platform: this MLflow has no _build_uvicorn_command; TCP_NODELAY fix "
            "and streamed downloads not applied",
            file=sys.stderr,
        )
    from mlflow.cli import cli

    cli(args=args, prog_name="mlflow")


if __name__ == "__main__":
    main()
