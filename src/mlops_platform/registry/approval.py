"""Gates and approval: evaluate a version, record the outcome and its artifact pin as
version tags, move ``staging`` onto an approved version."""

from __future__ import annotations

from mlops_platform.registry.common import (
    APPROVED,
    DIGEST_TAG,
    FILES_TAG,
    REJECTED,
    STAGING,
    STATUS_TAG,
    TAG_VALUE_LIMIT,
    now_iso,
)
from mlops_platform.registry.errors import GatesFileError
from mlops_platform.registry.gates import Gates
from mlops_platform.registry.locking import Locking, retry_on_conflict
from mlops_platform.registry.pinning import ArtifactDigest
from mlops_platform.registry.results import ApprovalResult, GateResult


class Approval(Locking):
    """The registry's fourth layer: gates and approval."""

    def evaluate_gates(self, name: str, version: str, gates: Gates) -> list[GateResult]:
        """Check every gate; raise GatesFileError when a gate names a metric the run lacks."""
        mv = self.model_version(name, version)
        results: list[GateResult] = []
        if gates.metrics:
            if not mv.run_id:
                raise GatesFileError(
                    f"{name} v{version} has no source run, so metric gates cannot be checked",
                    fix="register versions from a run (log_model(..., registered_model_name=))",
                )
            metrics = self.client.get_run(mv.run_id).data.metrics
            unknown = [g.metric for g in gates.metrics if g.metric not in metrics]
            if unknown:
                raise GatesFileError(
                    f"metric {unknown[0]!r} in the gates file is not logged by run "
                    f"{mv.run_id} of {name} v{version} "
                    f"(it has: {', '.join(sorted(metrics)) or 'no metrics'})",
                    fix="fix the metric name in the gates file",
                )
            results += [g.check(metrics[g.metric]) for g in gates.metrics]
        for key, wanted in gates.required_tags.items():
            have = mv.tags.get(key)
            if have is None:
                results.append(GateResult(f"tag.{key}", False, f"tag {key!r} is not set"))
            elif wanted is not None and have != wanted:
                results.append(
                    GateResult(f"tag.{key}", False, f"tag {key!r} is {have!r}, needs {wanted!r}")
                )
            else:
                results.append(GateResult(f"tag.{key}", True, f"tag {key!r} = {have!r}"))
        if gates.signature or gates.max_size_mb is not None:
            uri = self.client.get_model_version_download_uri(name, version)
        if gates.signature:
            signature = self._signature(uri)
            results.append(
                GateResult("signature", True, "the model has an input signature")
                if signature is not None and signature.inputs is not None
                else GateResult(
                    "signature",
                    False,
                    "the model has no signature (log it with input_example= or signature=)",
                )
            )
        if gates.max_size_mb is not None:
            size_mb = self._size_bytes(uri) / 1e6
            ok = size_mb <= gates.max_size_mb
            detail = f"model is {size_mb:.3f} MB, limit {gates.max_size_mb:g} MB"
            if not ok:
                detail += f" (over by {size_mb - gates.max_size_mb:.3f} MB)"
            results.append(
                GateResult(
                    "size", ok, detail, None if ok else round(size_mb - gates.max_size_mb, 6)
                )
            )
        return results

    def approve(self, name: str, version: str | int, gates: Gates) -> ApprovalResult:
        """Evaluate the gates, record the outcome on the version, move ``staging`` on success."""
        version = str(version)
        results = self.evaluate_gates(name, version, gates)
        status = APPROVED if all(g.passed for g in results) else REJECTED
        pin = self.artifacts_digest(name, version)
        at = now_iso()
        self._record_review(name, version, status, results, pin, at)
        staging_before = self.alias_version(name, STAGING)
        self._audit(
            name,
            "approved" if status == APPROVED else "rejected",
            version=version,
            failed=[g.gate for g in results if not g.passed],
        )
        moved = False
        if status == APPROVED and staging_before != version:
            staging_before, moved = self._move_staging(name, version, staging_before, pin.digest)
        return ApprovalResult(
            name, version, status, results, self.actor, at, staging_before, moved,
            pin.digest, len(pin.files), pin.size_bytes,
        )  # fmt: skip

    def _record_review(
        self,
        name: str,
        version: str,
        status: str,
        results: list[GateResult],
        pin: ArtifactDigest,
        at: str,
    ) -> None:
        """The review's outcome, each gate's result and the artifact pin, as version tags."""
        tags = {
            "mlops.approved_by" if status == APPROVED else "mlops.rejected_by": self.actor,
            "mlops.approved_at" if status == APPROVED else "mlops.rejected_at": at,
            "mlops.reviewed_by": self.actor,
            "mlops.reviewed_at": at,
        }
        tags.update({f"mlops.gate.{g.gate}": g.tag_value()[:TAG_VALUE_LIMIT] for g in results})
        pins = {DIGEST_TAG: pin.digest, FILES_TAG: pin.files_tag() or ""}
        # Never a moment where `approved` stands next to files nobody approved: an approval
        # writes the new pin before the status, a rejection the status before the pin.
        if status == APPROVED:
            tags = {**tags, **pins, STATUS_TAG: status}
        else:
            tags = {STATUS_TAG: status, **tags, **pins}
        for key, value in tags.items():
            if key == FILES_TAG and not value:
                self._delete_version_tag(name, version, key)
                continue
            self.client.set_model_version_tag(name, version, key, value)

    def _move_staging(
        self, name: str, version: str, before: str | None, digest: str
    ) -> tuple[str | None, bool]:
        """Point ``staging`` at the approved version; on a conflict read it again and retry.
        Where it pointed before, and whether it moved (not when it already points there)."""

        def step(attempt: int) -> tuple[str | None, bool]:
            expected = before if attempt == 1 else self.alias_version(name, STAGING)
            if expected == version:
                return expected, False
            move = self.move_alias(name, STAGING, version, expected=expected, verified=digest)
            return move.before, True

        return retry_on_conflict(step, retries=3)
