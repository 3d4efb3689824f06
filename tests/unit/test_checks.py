"""The one check/report type of `doctor`, `health` and `s3 diagnose`, and the S3 helpers
every store caller shares."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from mlops_platform import health, s3
from mlops_platform.checks import CheckResult, Report


def test_doctor_and_s3_diagnose_print_one_shape() -> None:
    finding = CheckResult("s3", "acl", "warn", "cannot read the ACL", "fix it", 0.12345)
    doctor = Report([finding], seconds=1.234).as_dict()
    diagnosis = s3.Diagnosis([finding], 0.5, endpoint="http://127.0.0.1:8333", bucket="b")
    diagnosed = diagnosis.as_dict()
    assert list(doctor) == ["status", "exit_code", "seconds", "findings"]
    assert list(diagnosed) == ["endpoint", "bucket", "status", "exit_code", "seconds", "findings"]
    expected = {
        "component": "s3",
        "check": "acl",
        "status": "warn",
        "detail": "cannot read the ACL",
        "remedy": "fix it",
        "seconds": 0.123,
    }
    assert doctor["findings"] == diagnosed["findings"] == [expected]
    assert (diagnosed["status"], diagnosed["exit_code"]) == ("warn", 1)
    # The names callers used before are the same type.
    assert health.Finding is s3.Check is CheckResult
    assert health.Report is Report and isinstance(diagnosis, Report)
    assert diagnosis.checks is diagnosis.findings and finding.name == "acl"


def _client_error(code: str | None, status: int = 400, message: str = "") -> ClientError:
    error = {"Code": code, "Message": message} if code is not None else {}
    return ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "HeadBucket",
    )


def test_error_code_of_any_failure() -> None:
    assert s3.error_code(_client_error("NoSuchBucket", 404)) == "NoSuchBucket"
    assert s3.error_code(_client_error(None, 403)) == "403"  # a HEAD has no body
    assert s3.error_code(EndpointConnectionError(endpoint_url="http://x")) == ""
    assert s3.error_code(ValueError("not S3")) == ""
    assert s3.error_text(_client_error("AccessDenied", 403, "no")) == "AccessDenied: no"
    assert s3.error_text(_client_error("AccessDenied", 403)) == "AccessDenied"
    assert s3.error_text(ValueError("first\nsecond")) == "first"


class Pages:
    """A store's answers to ListObjectsV2, page by page, and the calls it got."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.pages[len(self.calls) - 1]

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


def test_listing_follows_the_continuation_tokens() -> None:
    client = Pages(
        [
            {"Contents": [{"Key": "a"}, {"Key": "b"}], "IsTruncated": True,
             "NextContinuationToken": "t1"},
            {"Contents": [{"Key": "c"}], "IsTruncated": True, "NextContinuationToken": "t2"},
            {"IsTruncated": False},
        ]
    )  # fmt: skip
    keys = [o["Key"] for o in s3.iter_objects(client, "bucket", "mlflow/")]
    assert keys == ["a", "b", "c"]
    assert client.calls == [
        {"Bucket": "bucket", "Prefix": "mlflow/"},
        {"Bucket": "bucket", "Prefix": "mlflow/", "ContinuationToken": "t1"},
        {"Bucket": "bucket", "Prefix": "mlflow/", "ContinuationToken": "t2"},
    ]
    # A truncated page without a token ends the listing instead of repeating page one.
    lost = Pages([{"Contents": [{"Key": "a"}], "IsTruncated": True}])
    assert [o["Key"] for o in s3.iter_objects(lost, "bucket", "")] == ["a"]


def test_batch_delete_sends_at_most_1000_keys_a_call() -> None:
    client = Pages([])
    keys = [f"k{i}" for i in range(2500)]
    assert s3.delete_keys(client, "bucket", keys) == 2500
    sent = [[o["Key"] for o in c["Delete"]["Objects"]] for c in client.calls]
    assert [len(batch) for batch in sent] == [1000, 1000, 500]
    assert sum(sent, []) == keys
    assert all(c["Bucket"] == "bucket" and c["Delete"]["Quiet"] for c in client.calls)
    assert s3.delete_keys(client, "bucket", []) == 0 and len(client.calls) == 3
