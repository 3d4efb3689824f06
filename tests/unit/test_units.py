"""The leaf helpers: the one age grammar, the one size formatter, bind address -> URL host."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mlops_platform import hosts, units
from mlops_platform.errors import PlatformError

# `mlflow gc --older-than`'s own pattern (mlflow/cli/__init__.py, MLflow 3.17)
MLFLOW_GC_AGE = re.compile(
    r"^((?P<days>[\.\d]+?)d)?((?P<hours>[\.\d]+?)h)?((?P<minutes>[\.\d]+?)m)"
    r"?((?P<seconds>[\.\d]+?)s)?$"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("12h", dt.timedelta(hours=12)),
        ("1d12h", dt.timedelta(days=1, hours=12)),
        ("90m", dt.timedelta(minutes=90)),
        ("45s", dt.timedelta(seconds=45)),
        ("2w", dt.timedelta(weeks=2)),
        ("2d8h5m20s", dt.timedelta(days=2, hours=8, minutes=5, seconds=20)),
        ("1w2d", dt.timedelta(days=9)),
        ("1.5d", dt.timedelta(hours=36)),
        ("7", dt.timedelta(days=7)),
        ("0.5", dt.timedelta(hours=12)),
        (" 12h ", dt.timedelta(hours=12)),
        ("0d", dt.timedelta(0)),
    ],
)
def test_the_age_grammar(text: str, expected: dt.timedelta) -> None:
    assert units.parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "a week", "-1d", "d", "12h1d", "1y", "1D", "1d 12h", "1.d", "h12", "5ms"]
)
def test_a_bad_age_is_one_line_naming_the_accepted_forms(text: str) -> None:
    class Refused(PlatformError):
        pass

    with pytest.raises(Refused) as caught:
        units.parse_age(text, error=Refused)
    line = str(caught.value)
    assert "\n" not in line and repr(text) in line
    for form in ("30d", "12h", "1d12h", "90m", "2w"):
        assert form in line


@pytest.mark.parametrize("text", ["30d", "1d12h", "90m", "2w", "7", "1.5d", "0.25s", "0d"])
def test_every_age_goes_to_mlflow_gc_in_its_own_format(text: str) -> None:
    age = units.parse_age(text)
    written = units.mlflow_age(age)
    match = MLFLOW_GC_AGE.match(written)
    assert match, written
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    assert dt.timedelta(**parts) == age


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 kB"),
        (1536, "1.5 kB"),
        (5 * 1024**2, "5.0 MB"),
        (3 * 1024**3 + 1024**3 // 2, "3.5 GB"),
        (2 * 1024**4, "2.0 TB"),
        (2048 * 1024**4, "2048.0 TB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert units.human_size(n) == text


@pytest.mark.parametrize(
    ("bind", "reachable", "in_url"),
    [
        ("0.0.0.0", "127.0.0.1", "127.0.0.1"),
        ("::", "127.0.0.1", "127.0.0.1"),
        ("", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3", "10.1.2.3"),
        ("::1", "::1", "[::1]"),
        ("[::1]", "[::1]", "[::1]"),
        ("mlflow.example.com", "mlflow.example.com", "mlflow.example.com"),
    ],
)
def test_a_bind_address_seen_from_this_machine(bind: str, reachable: str, in_url: str) -> None:
    assert hosts.reachable(bind) == reachable
    assert hosts.url_host(bind) == in_url
