"""Pure parts of the doctor and the S3 diagnosis."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_platform import health, s3
from mlops_platform.settings import PlatformSettings


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(proxy_port=8443, public_url="https://ml.example.com")


def _report(*states: str) -> health.Report:
    return health.Report([health.Finding("c", f"x{i}", s, "d") for i, s in enumerate(states)])


def test_exit_codes() -> None:
    assert _report("ok", "ok").exit_code == 0
    assert _report("ok", "warn").exit_code == 1
    assert _report("warn", "fail", "ok").exit_code == 2
    assert _report("ok", "fail").as_dict()["status"] == "fail"


def test_public_policy_detection() -> None:
    public = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}
    aws_star = {"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}}}
    scoped = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}}]}
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*"}]}
    assert s3._policy_is_public(json.dumps(public))
    assert s3._policy_is_public(json.dumps(aws_star))
    assert not s3._policy_is_public(json.dumps(scoped))
    assert not s3._policy_is_public(json.dumps(deny))
    assert not s3._policy_is_public("")


def test_proxy_is_probed_with_the_public_host(settings: PlatformSettings) -> None:
    base, headers, _ = health._proxy_target(settings)
    assert base == "http://127.0.0.1:8443"
    assert headers == {"Host": "ml.example.com"}


GIB = 2**30


@pytest.mark.parametrize(
    ("total", "free", "status"),
    [
        (100 * GIB, 50 * GIB, "ok"),
        (100 * GIB, 10 * GIB, "ok"),  # exactly the warning line is still fine
        (100 * GIB, 10 * GIB - 1, "warn"),
        (100 * GIB, 3 * GIB, "warn"),  # exactly the failure line: a warning
        (100 * GIB, 3 * GIB - 1, "fail"),
        (4 * GIB, GIB // 2, "ok"),  # 12.5 % and exactly 512 MiB: enough
        (4 * GIB, GIB // 2 - 1, "fail"),  # 12.5 % yet under 512 MiB
        (0, 0, "fail"),  # a filesystem that reports no size at all
    ],
)
def test_disk_thresholds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, total: int, free: int, status: str
) -> None:
    seen: list[Path] = []

    def usage(path: Path) -> shutil._ntuple_diskusage:
        seen.append(Path(path))
        return shutil._ntuple_diskusage(total, total - free, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    finding = health._disk("state folder", tmp_path / "not" / "yet", 10, 3)
    assert finding.status == status, (total, free, finding)
    assert seen == [tmp_path]  # the nearest folder that exists is measured
    assert finding.detail.startswith(f"{free / GIB:.1f} GiB free")
    assert (finding.remedy != "") == (status != "ok"), finding


def test_disk_lines_are_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: PlatformSettings
) -> None:
    """9 % free: a warning by default; fine with a warning line of 5 %, a failure with a
    failure line of 9.5 %; the warning names the setting that moves its line."""
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(100 * GIB, 91 * GIB, 9 * GIB)
    )
    lines = {"state_dir": tmp_path}
    default = health.check_disk(settings.model_copy(update=lines))
    assert [f.status for f in default] == ["warn", "warn"]
    assert "MLOPS_DISK_WARN_FREE_PERCENT, now 10" in default[0].remedy
    lower = settings.model_copy(update={**lines, "disk_warn_free_percent": 5.0})
    assert [f.status for f in health.check_disk(lower)] == ["ok", "ok"]
    higher = settings.model_copy(
        update={**lines, "disk_warn_free_percent": 20.0, "disk_fail_free_percent": 9.5}
    )
    assert [f.status for f in health.check_disk(higher)] == ["fail", "fail"]


def test_lifecycle_rule_never_expires_artifacts() -> None:
    lifecycle = s3._lifecycle_rule()
    assert lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
    assert "Expiration" not in lifecycle, "the rule must never delete artifacts"


def _failed(component: str, check: str) -> health.Finding:
    return health.Finding(component, check, "fail", "detail", "its own fix")


def test_the_artifact_checks_fix_follows_the_cause_the_other_checks_found() -> None:
    artifact = health.Finding("proxy", "artifact", "fail", "answered 500", http_status=500)
    store_ok = health.Finding("s3", "tcp", "ok", "accepts")

    def fix(*others: health.Finding, finding: health.Finding = artifact) -> str:
        explained = health.explain([*others, finding])
        return next(f.remedy for f in explained if f.check == "artifact")

    assert "`encryption key` row" in fix(_failed("s3", "encryption key"))
    assert "s3 diagnose" in fix(_failed("s3", "tcp"))
    assert "s3 diagnose" not in fix(_failed("tracking", "answers"))
    assert "tracking server" in fix(_failed("tracking", "answers"))
    assert "`api` row" in fix(store_ok, _failed("proxy", "api"))
    forbidden = health.Finding("proxy", "artifact", "fail", "answered 403", http_status=403)
    assert "admin role" in fix(store_ok, finding=forbidden)
    assert "s3 diagnose" not in fix(store_ok)  # the store's checks passed
    assert "logs tracking" in fix(store_ok)
    gateway = health.Finding("proxy", "artifact", "fail", "answered 502", http_status=502)
    assert fix(store_ok, finding=gateway) == health.TRACKING_DOWN
    # an ok artifact check is left alone
    ok = health.Finding("proxy", "artifact", "ok", "round trip")
    assert health.explain([_failed("s3", "tcp"), ok])[1].remedy == ""
