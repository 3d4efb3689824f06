"""``s3 diagnose``: every check of the artifact store, each with status, detail and remedy.

The order is the order of dependence: the endpoint (DNS, TCP, TLS), then the key, then
the bucket; a failure there stops the diagnosis, since everything after it would fail for
the same reason. Then privacy, round trips, the bucket's policy and the latency.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.checks import CheckResult, Report
from mlops_platform.s3.helpers import NO_BUCKET, error_code, error_text
from mlops_platform.s3.probes import (
    KEY_FIX,
    check,
    policy_checks,
    privacy_checks,
    round_trips,
)
from mlops_platform.s3.store import client, endpoint_display
from mlops_platform.settings import PlatformSettings

CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}


@dataclass
class Diagnosis(Report):
    """The store's checks (``findings``, all of component ``s3``), for one endpoint and
    bucket."""

    endpoint: str = ""
    bucket: str = ""

    @property
    def checks(self) -> list[CheckResult]:
        return self.findings

    def as_dict(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "bucket": self.bucket, **super().as_dict()}


def diagnose(settings: PlatformSettings, *, timeout: float = 5.0, quick: bool = False) -> Diagnosis:
    """Every check of the artifact store, each with status, detail and remedy.

    ``quick`` skips the multipart and presigned round trips (for `doctor`).
    Nothing is left behind: probe objects live under ``.mlops-platform-probe/`` and are
    deleted; the bucket's settings are only read.
    """
    start = time.monotonic()
    report = Diagnosis(endpoint=endpoint_display(settings), bucket=settings.s3_bucket)
    report.findings += _checks(settings, timeout, quick)
    report.seconds = time.monotonic() - start
    return report


def _checks(settings: PlatformSettings, timeout: float, quick: bool) -> list[CheckResult]:
    out = _endpoint_checks(settings, timeout)
    if any(c.status == "fail" for c in out):
        return out
    s3 = client(settings, timeout=timeout, retries=1)
    out.append(_credentials(s3))
    if out[-1].status == "fail":
        return out
    # The bucket's policy and ACL are the admin's to read; the server's key may not.
    admin = client(settings, timeout=timeout, retries=1, purpose="admin")
    out.append(_bucket(settings, s3, admin))
    if out[-1].status == "fail":
        return out
    out.append(_listing(s3, settings.s3_bucket))
    out += privacy_checks(settings, admin, timeout)
    out += round_trips(settings, s3, quick=quick)
    out += policy_checks(admin, settings.s3_bucket)
    out += _latency(s3, settings.s3_bucket)
    return out


def _endpoint_checks(settings: PlatformSettings, timeout: float) -> list[CheckResult]:
    url = urlsplit(endpoint_display(settings))
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    fix = "check MLOPS_S3_ENDPOINT_URL, and that the store runs (`mlops-platform status`)"
    start = time.monotonic()
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [check("dns", "fail", f"{host} does not resolve ({exc.strerror})", fix)]
    out = [check("dns", "ok", f"{host} -> {addresses[0][4][0]}", seconds=time.monotonic() - start)]
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            out.append(
                check("tcp", "ok", f"{host}:{port} accepts", seconds=time.monotonic() - start)
            )
            out.append(_tls(sock, host) if url.scheme == "https" else _plain_http(host))
    except OSError as exc:
        out.append(
            check("tcp", "fail", f"cannot connect to {host}:{port} ({exc.strerror or exc})", fix)
        )
    return out


def _tls(sock: socket.socket, host: str) -> CheckResult:
    start = time.monotonic()
    context = ssl.create_default_context()
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return check(
                "tls",
                "ok",
                f"{tls.version()}, certificate valid for {host}",
                seconds=time.monotonic() - start,
            )
    except (ssl.SSLError, OSError) as exc:
        return check(
            "tls",
            "fail",
            f"TLS handshake failed: {exc}",
            "install a certificate the clients trust, or fix the host name",
        )


def _plain_http(host: str) -> CheckResult:
    loopback = host in ("127.0.0.1", "localhost", "::1")
    return check(
        "tls",
        "ok" if loopback else "warn",
        "plain http on loopback" if loopback else "plain http over the network",
        "" if loopback else "use an https:// endpoint for a store on another host",
    )


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def _credentials(s3: Any) -> CheckResult:
    try:
        _, took = _timed(lambda: s3.list_buckets())
        return check("credentials", "ok", "the key is accepted", seconds=took)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return check("credentials", "fail", f"the store refused the key ({code})", KEY_FIX)
        return check("credentials", "warn", f"ListBuckets refused ({code}); a bucket-scoped key?")
    except BotoCoreError as exc:
        return check("credentials", "fail", error_text(exc), KEY_FIX)


def _bucket(settings: PlatformSettings, s3: Any, admin: Any) -> CheckResult:
    """The bucket exists and the key may reach it."""
    bucket = settings.s3_bucket
    try:
        _, took = _timed(lambda: s3.head_bucket(Bucket=bucket))
        return check("bucket", "ok", f"{bucket} exists", seconds=took)
    except ClientError as exc:
        code = error_code(exc)
    if code in ("403", "AccessDenied") and _missing_for_admin(settings, admin, bucket):
        code = "404"  # a key scoped to another bucket cannot tell; the admin's can
    if code in NO_BUCKET:
        return check(
            "bucket",
            "fail",
            f"bucket {bucket} does not exist",
            "run `mlops-platform up` (creates it privately) or create it, or fix MLOPS_S3_BUCKET",
        )
    fix = KEY_FIX
    if settings.local_seaweedfs:
        fix += (
            "; the kit's SeaweedFS lets the key reach MLOPS_S3_BUCKET as it was at "
            "`up`: after changing it run `mlops-platform down && mlops-platform up`"
        )
    return check("bucket", "fail", f"no access to bucket {bucket} ({code})", fix)


def _listing(s3: Any, bucket: str) -> CheckResult:
    try:
        _, took = _timed(lambda: s3.list_objects_v2(Bucket=bucket, MaxKeys=1))
        return check("list", "ok", "listing allowed", seconds=took)
    except ClientError as exc:
        return check(
            "list", "fail", f"listing refused ({error_code(exc)})", "grant the key s3:ListBucket"
        )


def _latency(s3: Any, bucket: str) -> list[CheckResult]:
    samples = []
    for _ in range(3):
        try:
            samples.append(_timed(lambda: s3.head_bucket(Bucket=bucket))[1])
        except (ClientError, BotoCoreError):
            break
    if not samples:
        return []
    ms = sorted(samples)[len(samples) // 2] * 1000
    return [
        check(
            "latency",
            "ok" if ms < 200 else "warn",
            f"median HeadBucket {ms:.1f} ms",
            "" if ms < 200 else "put the store closer to the tracking server",
        )
    ]


def _missing_for_admin(settings: PlatformSettings, admin: Any, bucket: str) -> bool:
    """True when the admin key (a different one) sees that ``bucket`` does not exist."""
    if settings.s3_credentials("admin") == settings.s3_credentials():
        return False
    try:
        admin.head_bucket(Bucket=bucket)
    except ClientError as exc:
        return error_code(exc) in NO_BUCKET
    except BotoCoreError:
        return False
    return False
