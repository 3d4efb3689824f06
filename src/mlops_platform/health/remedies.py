"""Findings whose fix depends on the others: the artifact round trip's fix names its real
cause (the store's key, the store, the tracking server, the login)."""

from __future__ import annotations

from dataclasses import replace

from mlops_platform.checks import CheckResult

GATEWAY_ERRORS = (502, 503, 504)
TRACKING_DOWN = (
    "nginx cannot reach the tracking server: `mlops-platform up` starts it; "
    "`mlops-platform logs tracking` says why it stopped"
)


def artifact_remedy(http_status: int | None, findings: list[CheckResult]) -> str:
    """The fix of a failed artifact round trip, by its cause: the other checks' findings
    (the store's key, the store, the tracking server) or the answer's status."""
    failed = {
        (f.component, f.check)
        for f in findings
        if f.status == "fail" and (f.component, f.check) != ("proxy", "artifact")
    }
    if ("s3", "encryption key") in failed:
        return "the store has the wrong encryption key: the `encryption key` row's fix"
    if any(component == "s3" for component, _ in failed):
        return "the object store fails (see the s3 rows): `mlops-platform s3 diagnose`"
    if ("tracking", "answers") in failed or http_status in GATEWAY_ERRORS:
        return TRACKING_DOWN
    if ("proxy", "api") in failed:
        return "the same cause as the proxy's `api` row: its fix"
    if http_status in (401, 403):
        return (
            "the server refused the configured user (MLOPS_PROXY_USER) the artifact: "
            "give it the admin role (`mlops-platform users role NAME admin`, docs/access.md)"
        )
    if http_status is None:
        return "the proxy did not answer in time: `mlops-platform logs nginx`"
    if any(f.component == "s3" for f in findings):
        # The store's own checks passed: the server's side of the round trip failed.
        return "the store's checks pass: `mlops-platform logs tracking` says what failed"
    return "`mlops-platform s3 diagnose`, then `mlops-platform logs tracking`"


def explain(findings: list[CheckResult]) -> list[CheckResult]:
    """Findings whose fix depends on the others get the fix of their real cause."""
    out = []
    for f in findings:
        if (f.component, f.check) == ("proxy", "artifact") and f.status == "fail":
            f = replace(f, remedy=artifact_remedy(f.http_status, findings))
        out.append(f)
    return out
