"""Conflict-safe alias moves: the model's lock, a compare-and-set under it, and the one
retry policy for a move that lost to another."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mlops_platform.registry.common import LOCK_CONTENDED, LOCK_PREFIX, error_code, server_error
from mlops_platform.registry.errors import LockTimeoutError, PromotionConflictError
from mlops_platform.registry.pinning import Pinning
from mlops_platform.registry.results import AliasMove

T = TypeVar("T")


def retry_on_conflict(step: Callable[[int], T], *, retries: int) -> T:
    """``step(attempt)`` for attempt 1, 2, ...: after a PromotionConflictError (the alias
    moved meanwhile) it runs again, up to ``retries`` more times, with jittered backoff;
    the last conflict is raised."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return step(attempt)
        except PromotionConflictError:
            if attempt > retries:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.5))


class Locking(Pinning):
    """The registry's third layer: the model's lock and the alias moves made under it."""

    def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        expected: str | None,
        require_approved: bool = True,
        verified: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` only if it still points at ``expected`` (None: unset).

        Raises PromotionConflictError when it moved, NotApprovedError when the target is not
        approved at the moment of the move, ArtifactsChangedError when its files are not the
        approved ones. The files are downloaded and hashed before the lock is taken (unless
        the caller already did: ``verified`` is the pin it checked them against); under the
        lock the approval and its pin are read again. The check, the move and the audit
        event happen under the model's lock; the alias is read back before it is released.
        """
        version = str(version)
        if require_approved and verified is None:
            verified = self.verify_artifacts(name, version).digest
        with self.lock(name) as token:
            current = self.alias_version(name, alias)
            if current != expected:
                self._audit(
                    name, "conflict", alias=alias, expected=expected, found=current,
                    version=version,
                )  # fmt: skip
                raise PromotionConflictError(
                    f"@{alias} of {name!r} moved to v{current} while this promotion expected "
                    f"v{expected}; nothing was changed",
                    fix="re-run the command to decide against the new version",
                )
            if require_approved:
                self._require_approved(name, version, digest=verified)
            self._check_lock(name, token)
            self.client.set_registered_model_alias(name, alias, version)
            after = self.alias_version(name, alias)
            if after != version:
                raise PromotionConflictError(
                    f"@{alias} of {name!r} reads v{after} right after moving it to v{version}: "
                    "something outside the kit moves aliases",
                    fix="make every alias change go through `mlops-platform registry`",
                )
            self._check_lock(name, token)
            self._audit(
                name, "alias_moved", alias=alias, before=expected, after=version, token=token,
                **(details or {}),
            )  # fmt: skip
        return AliasMove(name, alias, expected, version, token, 1)

    @contextmanager
    def lock(self, name: str) -> Iterator[str]:
        """Hold the model's lock: a registered model whose creation is atomic server-side."""
        lock_name = LOCK_PREFIX + name
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.05
        while True:
            expires = time.time() + self.lease_seconds
            try:
                self.client.create_registered_model(
                    lock_name,
                    tags={"token": token, "owner": self.actor, "expires": f"{expires:.3f}"},
                    description=f"promotion lock of {name} held by {self.actor}; "
                    "mlops-platform deletes it when done",
                )
                break
            except Exception as exc:
                # Taken: ALREADY_EXISTS. Or taken and released at once: MLflow's store
                # answers a failed insert by reading the existing model, which the holder
                # may have deleted meanwhile, so a lost race can read DOES_NOT_EXIST.
                if error_code(exc) not in LOCK_CONTENDED:
                    raise server_error(
                        f"take the lock of {name!r}", exc, self.tracking_uri
                    ) from None
            holder = self._lock_tags(lock_name)
            if holder.get("token") == token:  # our create went through; a retry saw it
                break
            if holder and float(holder.get("expires", "0") or 0) < time.time():
                self._break_lock(lock_name, holder.get("token"))
                continue
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"the promotion lock of {name!r} is held by {holder.get('owner', '?')} "
                    f"(waited {self.lock_wait_seconds:g} s)",
                    fix=f"retry later; a crashed holder's lock expires after "
                    f"{self.lease_seconds:g} s",
                )
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
        try:
            yield token
        finally:
            try:
                if self._lock_tags(lock_name).get("token") == token:
                    self.client.delete_registered_model(lock_name)
            except Exception:
                pass  # it expires

    def _lock_tags(self, lock_name: str) -> dict[str, str]:
        try:
            return dict(self.client.get_registered_model(lock_name).tags)
        except Exception:
            return {}

    def _check_lock(self, name: str, token: str) -> None:
        if self._lock_tags(LOCK_PREFIX + name).get("token") != token:
            raise PromotionConflictError(
                f"lost the promotion lock of {name!r} (its lease of {self.lease_seconds:g} s "
                "ran out and another promotion broke it)",
                fix="re-run the command",
            )

    def _break_lock(self, lock_name: str, stale_token: str | None) -> None:
        if self._lock_tags(lock_name).get("token") != stale_token:
            return  # someone else already broke or renewed it
        try:
            self.client.delete_registered_model(lock_name)
        except Exception:
            pass
