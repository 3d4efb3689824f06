"""MLflow logging from distributed training: rank 0 logs, every other rank does nothing.

With ``torchrun`` (or DeepSpeed, Accelerate, Lightning) every process runs the same
script; if each one calls ``mlflow.start_run`` the experiment fills with N copies of a
run and N writers race on the same metrics. :class:`RankZeroLogger` makes the choice
once, from the launcher's ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``:

- on rank 0 each call goes to ``mlflow`` itself (``log_metrics``, ``log_params``,
  ``set_tags``, ``log_artifact``, ``sklearn.log_model`` ... any attribute of the module);
- on every other rank each call is a no-op that returns ``None``, and ``start_run`` is an
  empty context. Those ranks never import ``mlflow``, so they touch no global state: no
  tracking URI, no active run, no experiment lookup, no HTTP request.

Example::

    from mlops_platform.distributed import RankZeroLogger

    log = RankZeroLogger()                # reads RANK / LOCAL_RANK / WORLD_SIZE
    with log.start_run(run_name="ddp-resnet"):
        log.log_params({"world_size": log.rank.world_size, "lr": 1e-3})
        for epoch in range(epochs):
            loss = train_one_epoch()      # every rank trains
            log.log_metric("loss", loss, step=epoch)   # only rank 0 records it

Reading the environment here is a deliberate exception to the kit's rule that
``mlops_platform.settings`` is the only reader of the environment: this is client-side
library code that runs inside a user's training job and reads the *job launcher's*
variables, not the platform's settings. Pass ``environ=`` (or a :class:`RankInfo`) to
decide otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mlops_platform.errors import PlatformError

T = TypeVar("T")
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


class RankError(PlatformError):
    """RANK / LOCAL_RANK / WORLD_SIZE are malformed or inconsistent."""


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RankInfo:
        """The launcher's view; a job without the variables is a single process, rank 0."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, default in zip(RANK_VARIABLES, (0, 0, 1), strict=True):
            raw = env.get(name, "").strip()
            if not raw:
                values[name] = default
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise RankError(
                    f"{name}={raw!r} is not an integer",
                    fix="let the launcher (torchrun, deepspeed, accelerate) set it, or unset it",
                ) from None
        rank, local_rank, world = values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"]
        if world < 1 or not 0 <= rank < world or local_rank < 0 or local_rank > rank:
            raise RankError(
                f"inconsistent ranks: RANK={rank} LOCAL_RANK={local_rank} WORLD_SIZE={world}",
                fix="RANK must be in [0, WORLD_SIZE) and LOCAL_RANK in [0, RANK]",
            )
        return cls(rank, local_rank, world)


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class _NoOpNamespace:
    """What ``log.sklearn`` or ``log.pytorch`` is on a non-zero rank: calls do nothing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _NoOpNamespace() if name.islower() and "_" not in name else _noop

    def __call__(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class RankZeroLogger:
    """``mlflow`` on rank 0; a do-nothing stand-in on every other rank."""

    def __init__(
        self, rank: RankInfo | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.rank = rank or RankInfo.from_env(environ)

    @property
    def is_main(self) -> bool:
        return self.rank.is_main

    @contextlib.contextmanager
    def start_run(self, **kwargs: Any) -> Iterator[Any]:
        """``mlflow.start_run(**kwargs)`` on rank 0; yields None elsewhere."""
        if not self.is_main:
            yield None
            return
        import mlflow

        with mlflow.start_run(**kwargs) as run:
            yield run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "rank":
            raise AttributeError(name)
        if not self.rank.is_main:
            return _NoOpNamespace() if name in _FLAVOURS else _noop
        import mlflow

        return getattr(mlflow, name)


_FLAVOURS = {"sklearn", "pytorch", "tensorflow", "keras", "xgboost", "lightgbm", "pyfunc"}


def rank_zero_only(
    fn: Callable[..., T], *, rank: RankInfo | None = None
) -> Callable[..., T | None]:
    """Decorate a function so that it runs on rank 0 and returns None elsewhere."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        info = rank or RankInfo.from_env()
        return fn(*args, **kwargs) if info.is_main else None

    return wrapper
