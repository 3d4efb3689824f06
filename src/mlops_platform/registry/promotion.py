"""Champion/challenger promotion: score both on a dataset, decide (a pure function), move
``champion`` under the lock; on a conflict decide again against the new champion."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlops_platform.registry.approval import Approval
from mlops_platform.registry.common import CHALLENGER, CHAMPION
from mlops_platform.registry.errors import AliasNotFoundError, DatasetError
from mlops_platform.registry.locking import retry_on_conflict
from mlops_platform.registry.pinning import digest_tree
from mlops_platform.registry.results import PromotionResult
from mlops_platform.registry.scoring import HIGHER_IS_BETTER, features_for, read_dataset, score


@dataclass(frozen=True)
class Decision:
    """What a promotion does with the scores it has: nothing (``already``: the challenger
    is the champion; ``keep``: it is not better by the margin) or ``promote``; and why."""

    action: Literal["already", "keep", "promote"]
    reason: str


def decide(
    *,
    metric: str,
    margin: float,
    champion: str | None,
    challenger: str,
    champion_score: float | None,
    challenger_score: float,
) -> Decision:
    """Promote when there is no champion, or the challenger beats it by ``margin`` (by
    anything at all when the margin is 0) in the metric's better direction."""
    if champion == challenger:
        return Decision("already", f"v{challenger} is already the champion")
    if champion_score is not None:
        if HIGHER_IS_BETTER[metric]:
            gain = challenger_score - champion_score
        else:
            gain = champion_score - challenger_score
        if gain < margin or (margin == 0 and gain <= 0):
            return Decision(
                "keep",
                f"challenger v{challenger} {metric}={challenger_score:.6g} is not better "
                f"than champion v{champion} {metric}={champion_score:.6g} by {margin:g}",
            )
    beaten = (
        f"v{champion} {metric}={champion_score:.6g}"
        if champion is not None and champion_score is not None
        else "no champion"
    )
    return Decision("promote", f"v{challenger} {metric}={challenger_score:.6g} beats {beaten}")


class Promotion(Approval):
    """The registry's last layer: promotion."""

    def promote(
        self,
        name: str,
        dataset: Path,
        *,
        metric: str,
        target: str = "target",
        margin: float = 0.0,
        challenger: str | None = None,
        initial: bool = False,
        retries: int = 3,
    ) -> PromotionResult:
        """Move ``champion`` to the challenger when it is approved and better by ``margin``.

        On a conflict (the champion moved meanwhile) the challenger is re-scored against
        the new champion, up to ``retries`` times, with jittered backoff.
        """
        challenger, pinned, features, labels = self._promotion_inputs(
            name, dataset, metric, target, challenger
        )
        scores: dict[str, float] = {}

        def score_of(version: str) -> float:
            if version not in scores:
                # the challenger's scored bytes are the approved ones (checked on the copy)
                pin = pinned if version == challenger else None
                scores[version] = self._score(name, version, features, labels, metric, pin)
            return scores[version]

        challenger_score = score_of(challenger)

        def attempt(n: int) -> PromotionResult:
            champion = self.alias_version(name, CHAMPION)
            if champion is None and not initial:
                raise AliasNotFoundError(
                    f"model {name!r} has no @champion alias",
                    fix=f"make the first one: mlops-platform registry promote {name} "
                    f"--challenger {challenger} --initial --dataset ... --metric {metric}",
                )
            champion_score = (
                None if champion is None or champion == challenger else score_of(champion)
            )
            decision = decide(
                metric=metric, margin=margin, champion=champion, challenger=challenger,
                champion_score=champion_score, challenger_score=challenger_score,
            )  # fmt: skip
            if decision.action == "already":
                return PromotionResult(
                    name, metric, margin, champion, challenger, challenger_score,
                    challenger_score, False, decision.reason, n,
                )  # fmt: skip
            if decision.action == "keep":
                self._audit(
                    name, "kept", champion=champion, challenger=challenger, metric=metric,
                    champion_score=champion_score, challenger_score=challenger_score,
                )  # fmt: skip
                return PromotionResult(
                    name, metric, margin, champion, challenger, champion_score,
                    challenger_score, False, decision.reason, n,
                )  # fmt: skip
            details = {
                "metric": metric,
                "champion_score": champion_score,
                "challenger_score": challenger_score,
                "margin": margin,
            }
            move = self.move_alias(
                name, CHAMPION, challenger, expected=champion, require_approved=True,
                verified=pinned, details=details,
            )  # fmt: skip
            return PromotionResult(
                name, metric, margin, move.before, challenger, champion_score,
                challenger_score, True, decision.reason, n,
            )  # fmt: skip

        return retry_on_conflict(attempt, retries=retries)

    def _promotion_inputs(
        self, name: str, dataset: Path, metric: str, target: str, challenger: str | None
    ) -> tuple[str, str, Any, Any]:
        """Check what a promotion needs before scoring anything: a known metric, the model,
        an approved and pinned challenger, a dataset with the target column. The challenger,
        its pin, the features and the labels."""
        if metric not in HIGHER_IS_BETTER:
            raise DatasetError(
                f"unknown metric {metric!r} (use one of {', '.join(HIGHER_IS_BETTER)})",
                fix="pass --metric with one of those",
            )
        self._registered_model(name)
        challenger = str(challenger) if challenger else self.require_alias(name, CHALLENGER)
        self.model_version(name, challenger)
        pinned = self._require_approved(name, challenger)
        data = read_dataset(dataset)
        if target not in data.columns:
            raise DatasetError(
                f"dataset {dataset} has no target column {target!r} "
                f"(columns: {', '.join(map(str, data.columns))})",
                fix="pass --target with the label column's name",
            )
        return challenger, pinned, data.drop(columns=[target]), data[target]

    def _score(
        self,
        name: str,
        version: str,
        features: Any,
        labels: Any,
        metric: str,
        pin: str | None = None,
    ) -> float:
        import mlflow.pyfunc
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="mlops-eval-") as tmp:
            local = self.download_version(name, version, Path(tmp))
            if pin is not None:
                self._compare_pin(name, version, pin, digest_tree(local))
            signature = Model.load(str(Path(local) / "MLmodel")).signature
            x = features_for(signature, features, where=f"{name} v{version}")
            model = mlflow.pyfunc.load_model(str(local))
            return score(metric, labels, model.predict(x))
