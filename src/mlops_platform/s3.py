"""The artifact store: a correctly configured client, the private bucket, and its diagnosis."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.errors import ServiceError
from mlops_platform.settings import PlatformSettings, S3Purpose


def client(
    settings: PlatformSettings,
    *,
    timeout: float = 10.0,
    retries: int = 3,
    purpose: S3Purpose = "server",
) -> Any:
    """A boto3 S3 client for the platform's store (path-style for non-AWS endpoints).

    ``purpose`` picks the key: ``server`` (the tracking server's, scoped to the bucket),
    ``admin`` (the kit's bucket creation and configuration) or ``backup`` (read-only).
    """
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": retries, "mode": "standard"},
    )
    key_id, secret = settings.s3_credentials(purpose)
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        config=config,
    )


def ensure_bucket(settings: PlatformSettings) -> bool:
    """Create the artifact bucket if it is missing; True when it was created.

    A new bucket gets no policy and no ACL grant: it is private. Done with the admin key.
    """
    s3 = client(settings, purpose="admin")
    try:
        s3.head_bucket(Bucket=settings.s3_bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ServiceError(
                f"cannot reach bucket {settings.s3_bucket}: {code or exc}",
                fix="check MLOPS_S3_ADMIN_ACCESS_KEY_ID / MLOPS_S3_ADMIN_SECRET_ACCESS_KEY "
                "(else MLOPS_S3_ACCESS_KEY_ID) and the bucket's policy",
            ) from None
    except BotoCoreError as exc:
        raise ServiceError(
            f"cannot reach the S3 endpoint {settings.s3_endpoint}: {exc}",
            fix="check MLOPS_S3_ENDPOINT_URL",
        ) from None
    kwargs: dict[str, Any] = {"Bucket": settings.s3_bucket}
    if settings.s3_region != "us-east-1" and settings.object_store == "external":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise ServiceError(
            f"cannot create bucket {settings.s3_bucket}: {code}",
            fix="create it by hand or grant the key CreateBucket",
        ) from None
    return True


def reachable(settings: PlatformSettings) -> bool:
    """True when the endpoint accepts the kit's (admin) credentials."""
    try:
        client(settings, timeout=3, retries=1, purpose="admin").list_buckets()
        return True
    except (ClientError, BotoCoreError):
        return False


# -- diagnosis -----------------------------------------------------------------------

Status = Literal["ok", "warn", "fail", "skip"]
PROBE_PREFIX = ".mlops-platform-probe"
LIFECYCLE_RULE_ID = "mlops-platform-abort-incomplete-uploads"
ABORT_AFTER_DAYS = 7
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)


@dataclass(frozen=True)
class Check:
    """One diagnosis step: what was checked, how it went, and what to do about it."""

    name: str
    status: Status
    detail: str
    remedy: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "remedy": self.remedy,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Diagnosis:
    endpoint: str
    bucket: str
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> Status:
        states = {c.status for c in self.checks}
        if "fail" in states:
            return "fail"
        if "warn" in states:
            return "warn"
        return "ok"

    def as_dict(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "status": self.status,
            "checks": [c.as_dict() for c in self.checks],
        }


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        return f"{_code(exc)}: {message}".rstrip(": ")
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}
KEY_FIX = "check MLOPS_S3_ACCESS_KEY_ID / MLOPS_S3_SECRET_ACCESS_KEY (the store's identity file)"


def endpoint_display(settings: PlatformSettings) -> str:
    return settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com"


def _endpoint_checks(settings: PlatformSettings, timeout: float) -> list[Check]:
    url = urlsplit(endpoint_display(settings))
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    fix = "check MLOPS_S3_ENDPOINT_URL, and that the store runs (`mlops-platform status`)"
    start = time.monotonic()
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [Check("dns", "fail", f"{host} does not resolve ({exc.strerror})", fix)]
    out = [Check("dns", "ok", f"{host} -> {addresses[0][4][0]}", seconds=time.monotonic() - start)]
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            out.append(
                Check("tcp", "ok", f"{host}:{port} accepts", seconds=time.monotonic() - start)
            )
            if url.scheme == "https":
                start = time.monotonic()
                context = ssl.create_default_context()
                try:
                    with context.wrap_socket(sock, server_hostname=host) as tls:
                        out.append(
                            Check(
                                "tls",
                                "ok",
                                f"{tls.version()}, certificate valid for {host}",
                                seconds=time.monotonic() - start,
                            )
                        )
                except (ssl.SSLError, OSError) as exc:
                    out.append(
                        Check(
                            "tls",
                            "fail",
                            f"TLS handshake failed: {exc}",
                            "install a certificate the clients trust, or fix the host name",
                        )
                    )
            else:
                loopback = host in ("127.0.0.1", "localhost", "::1")
                out.append(
                    Check(
                        "tls",
                        "ok" if loopback else "warn",
                        "plain http on loopback" if loopback else "plain http over the network",
                        "" if loopback else "use an https:// endpoint for a store on another host",
                    )
                )
    except OSError as exc:
        out.append(
            Check("tcp", "fail", f"cannot connect to {host}:{port} ({exc.strerror or exc})", fix)
        )
    return out


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def diagnose(settings: PlatformSettings, *, timeout: float = 5.0, quick: bool = False) -> Diagnosis:
    """Every check of the artifact store, each with status, detail and remedy.

    ``quick`` skips the multipart and presigned round trips (for `doctor`).
    Nothing is left behind: probe objects live under ``.mlops-platform-probe/`` and are
    deleted; the bucket's settings are only read.
    """
    bucket = settings.s3_bucket
    report = Diagnosis(endpoint_display(settings), bucket)
    add = report.checks.append
    report.checks += _endpoint_checks(settings, timeout)
    if any(c.status == "fail" for c in report.checks):
        return report
    s3 = client(settings, timeout=timeout, retries=1)

    # credentials
    try:
        _, took = _timed(lambda: s3.list_buckets())
        add(Check("credentials", "ok", "the key is accepted", seconds=took))
    except ClientError as exc:
        code = _code(exc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            add(Check("credentials", "fail", f"the store refused the key ({code})", KEY_FIX))
            return report
        add(Check("credentials", "warn", f"ListBuckets refused ({code}); a bucket-scoped key?"))
    except BotoCoreError as exc:
        add(Check("credentials", "fail", _why(exc), KEY_FIX))
        return report

    # The bucket's policy and ACL are the admin's to read; the server's key may not.
    admin = client(settings, timeout=timeout, retries=1, purpose="admin")
    # bucket exists and is listable
    try:
        _, took = _timed(lambda: s3.head_bucket(Bucket=bucket))
        add(Check("bucket", "ok", f"{bucket} exists", seconds=took))
    except ClientError as exc:
        code = _code(exc)
        if code in ("403", "AccessDenied") and _missing_for_admin(settings, admin, bucket):
            code = "404"  # a key scoped to another bucket cannot tell; the admin's can
        if code in ("404", "NoSuchBucket", "NotFound"):
            add(
                Check(
                    "bucket",
                    "fail",
                    f"bucket {bucket} does not exist",
                    "run `mlops-platform up` (creates it privately) or create it, or fix "
                    "MLOPS_S3_BUCKET",
                )
            )
        else:
            fix = KEY_FIX
            if settings.local_seaweedfs:
                fix += (
                    "; the kit's SeaweedFS lets the key reach MLOPS_S3_BUCKET as it was at "
                    "`up`: after changing it run `mlops-platform down && mlops-platform up`"
                )
            add(Check("bucket", "fail", f"no access to bucket {bucket} ({code})", fix))
        return report
    try:
        _, took = _timed(lambda: s3.list_objects_v2(Bucket=bucket, MaxKeys=1))
        add(Check("list", "ok", "listing allowed", seconds=took))
    except ClientError as exc:
        add(Check("list", "fail", f"listing refused ({_code(exc)})", "grant the key s3:ListBucket"))

    report.checks += _privacy_checks(settings, admin, timeout)
    report.checks += _round_trips(settings, s3, quick=quick)
    report.checks += _policy_checks(admin, bucket)

    # latency
    samples = []
    for _ in range(3):
        try:
            samples.append(_timed(lambda: s3.head_bucket(Bucket=bucket))[1])
        except (ClientError, BotoCoreError):
            break
    if samples:
        ms = sorted(samples)[len(samples) // 2] * 1000
        add(
            Check(
                "latency",
                "ok" if ms < 200 else "warn",
                f"median HeadBucket {ms:.1f} ms",
                "" if ms < 200 else "put the store closer to the tracking server",
            )
        )
    return report


def _missing_for_admin(settings: PlatformSettings, admin: Any, bucket: str) -> bool:
    """True when the admin key (a different one) sees that ``bucket`` does not exist."""
    if settings.s3_credentials("admin") == settings.s3_credentials():
        return False
    try:
        admin.head_bucket(Bucket=bucket)
    except ClientError as exc:
        return _code(exc) in ("404", "NoSuchBucket", "NotFound")
    except BotoCoreError:
        return False
    return False


def _privacy_checks(settings: PlatformSettings, s3: Any, timeout: float) -> list[Check]:
    bucket = settings.s3_bucket
    out: list[Check] = []
    fix = f"run `mlops-platform s3 apply-policy` after removing public access: {_private_fix()}"
    try:
        policy = s3.get_bucket_policy(Bucket=bucket).get("Policy", "")
        public = _policy_is_public(policy)
        out.append(
            Check(
                "policy",
                "fail" if public else "ok",
                "bucket policy grants access to everyone"
                if public
                else "policy grants no public access",
                fix if public else "",
            )
        )
    except ClientError as exc:
        code = _code(exc)
        if code in ("NoSuchBucketPolicy", "404", "NotImplemented"):
            out.append(Check("policy", "ok", "no bucket policy"))
        else:
            out.append(Check("policy", "warn", f"cannot read the policy ({code})"))
    try:
        grants = s3.get_bucket_acl(Bucket=bucket).get("Grants", [])
        public_grants = [
            g.get("Permission", "")
            for g in grants
            if g.get("Grantee", {}).get("URI") in PUBLIC_GROUPS
        ]
        out.append(
            Check(
                "acl",
                "fail" if public_grants else "ok",
                f"ACL grants everyone {', '.join(public_grants)}"
                if public_grants
                else "ACL is private",
                fix if public_grants else "",
            )
        )
    except ClientError as exc:
        out.append(Check("acl", "warn", f"cannot read the ACL ({_code(exc)})"))
    # What an anonymous client really gets, whatever the policy documents say.
    anon = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        config=Config(
            signature_version=UNSIGNED,
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1},
        ),
    )
    try:
        anon.list_objects_v2(Bucket=bucket, MaxKeys=1)
        out.append(Check("anonymous", "fail", "an anonymous client can list the bucket", fix))
    except ClientError:
        out.append(Check("anonymous", "ok", "anonymous listing refused"))
    except BotoCoreError as exc:
        out.append(Check("anonymous", "warn", f"anonymous probe failed: {_why(exc)}"))
    return out


def _private_fix() -> str:
    return "`aws s3api delete-bucket-policy` and `put-bucket-acl --acl private` on the bucket"


def _policy_is_public(policy: str) -> bool:
    try:
        document = json.loads(policy) if policy else {}
    except ValueError:
        return False
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if principal == "*" or (
            isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"])
        ):
            return True
    return False


def _round_trips(settings: PlatformSettings, s3: Any, *, quick: bool) -> list[Check]:
    bucket = settings.s3_bucket
    out: list[Check] = []
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
    body = os.urandom(64 * 1024)
    digest = hashlib.sha256(body).hexdigest()
    write_fix = "grant the key s3:PutObject, s3:GetObject and s3:DeleteObject on the bucket"
    start = time.monotonic()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except (ClientError, BotoCoreError) as exc:
        out.append(Check("write", "fail", f"cannot write {key} ({_why(exc)})", write_fix))
        return out
    try:
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        same = hashlib.sha256(got).hexdigest() == digest
        out.append(
            Check(
                "write-read-delete",
                "ok" if same else "fail",
                "64 KiB round trip, sha256 matches" if same else "the object read back differs",
                "" if same else "the store corrupts data: check its disks and logs",
                seconds=time.monotonic() - start,
            )
        )
    except (ClientError, BotoCoreError) as exc:
        out.append(Check("write-read-delete", "fail", f"cannot read back ({_why(exc)})", write_fix))
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            out.append(Check("delete", "fail", f"cannot delete {key} ({_why(exc)})", write_fix))
    if quick:
        return out
    out.append(_multipart(s3, bucket))
    out.append(_presigned(s3, bucket))
    return out


def _multipart(s3: Any, bucket: str) -> Check:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-multipart"
    parts_data = [os.urandom(5 * 1024 * 1024), os.urandom(1024)]
    start = time.monotonic()
    upload_id = None
    try:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, data in enumerate(parts_data, start=1):
            etag = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        upload_id = None
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        ok = hashlib.sha256(got).digest() == hashlib.sha256(b"".join(parts_data)).digest()
        return Check(
            "multipart",
            "ok" if ok else "fail",
            "2-part upload (5 MiB + 1 KiB), sha256 matches" if ok else "assembled object differs",
            "" if ok else "the store assembles multipart uploads wrongly: check its version",
            seconds=time.monotonic() - start,
        )
    except (ClientError, BotoCoreError) as exc:
        return Check(
            "multipart",
            "fail",
            f"multipart upload failed ({_why(exc)})",
            "large artifacts will fail: grant s3:AbortMultipartUpload/ListMultipartUploadParts "
            "and check the store's limits",
        )
    finally:
        if upload_id:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass


def _presigned(s3: Any, bucket: str) -> Check:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-presigned"
    body = os.urandom(1024)
    start = time.monotonic()
    try:
        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        get_url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        request = urllib.request.Request(put_url, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
        with urllib.request.urlopen(get_url, timeout=10) as response:  # noqa: S310
            got = response.read()
        ok = got == body
        return Check(
            "presigned",
            "ok" if ok else "fail",
            "presigned PUT then GET round trip" if ok else "presigned GET returned other bytes",
            seconds=time.monotonic() - start,
        )
    except (urllib.error.URLError, OSError, ClientError, BotoCoreError) as exc:
        return Check(
            "presigned",
            "fail",
            f"presigned URL round trip failed ({exc})",
            "direct artifact access needs presigned URLs: check the clock (skew) and "
            "MLOPS_S3_REGION / MLOPS_S3_PATH_STYLE",
        )
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass


def _lifecycle_rule() -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_AFTER_DAYS},
    }


def _policy_checks(s3: Any, bucket: str) -> list[Check]:
    out: list[Check] = []
    fix = "run `mlops-platform s3 apply-policy`"
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        ours = [r for r in rules if r.get("AbortIncompleteMultipartUpload")]
        out.append(
            Check(
                "lifecycle",
                "ok" if ours else "warn",
                f"{len(rules)} rule(s); incomplete uploads aborted"
                if ours
                else f"{len(rules)} rule(s), none aborts incomplete multipart uploads",
                "" if ours else fix,
            )
        )
    except ClientError as exc:
        out.append(Check("lifecycle", "warn", f"no lifecycle rule ({_code(exc)})", fix))
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else ""
        out.append(Check("encryption", "ok", f"default encryption {algo}"))
    except (ClientError, KeyError, IndexError) as exc:
        code = _code(exc) if isinstance(exc, ClientError) else "unreadable"
        out.append(
            Check(
                "encryption",
                "warn",
                f"no default server-side encryption ({code})",
                f"{fix} (SeaweedFS needs an SSE key first: s3.sse.kek in security.toml)",
            )
        )
    return out


@dataclass(frozen=True)
class PolicyResult:
    lifecycle: str  # set | skipped
    encryption: str  # set | skipped | unsupported (set, writes failed, removed again)

    def as_dict(self) -> dict[str, str]:
        return {"lifecycle": self.lifecycle, "encryption": self.encryption}


def _write_works(s3: Any, bucket: str) -> bool:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}-policy"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"probe")
    except (ClientError, BotoCoreError):
        return False
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError):
        pass
    return True


def apply_policy(settings: PlatformSettings) -> PolicyResult:
    """Set the abort-incomplete-uploads lifecycle rule and AES256 default encryption.

    Idempotent: what is already there is skipped; other lifecycle rules are kept.
    Done with the admin key.
    """
    s3 = client(settings, purpose="admin")
    bucket = settings.s3_bucket
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ServiceError(
                f"bucket {bucket} does not exist", fix="run `mlops-platform up` or create it"
            ) from None
        raise ServiceError(f"no access to bucket {bucket} ({code})", fix=KEY_FIX) from None
    except BotoCoreError as exc:
        raise ServiceError(
            f"cannot reach the S3 endpoint {endpoint_display(settings)}: {_why(exc)}",
            fix="check MLOPS_S3_ENDPOINT_URL",
        ) from None
    try:
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if _code(exc) not in ("NoSuchLifecycleConfiguration", "404"):
                raise
            rules = []
        if any(r.get("ID") == LIFECYCLE_RULE_ID for r in rules):
            lifecycle = "skipped"
        else:
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [*rules, _lifecycle_rule()]}
            )
            lifecycle = "set"
        try:
            s3.get_bucket_encryption(Bucket=bucket)
            encryption = "skipped"
        except ClientError as exc:
            if _code(exc) not in ("ServerSideEncryptionConfigurationNotFoundError", "404"):
                raise
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
            encryption = "set"
            if not _write_works(s3, bucket):
                # SeaweedFS without an SSE key (s3.sse.kek) accepts the setting, then fails
                # every write: never leave the store in that state.
                s3.delete_bucket_encryption(Bucket=bucket)
                encryption = "unsupported"
    except ClientError as exc:
        raise ServiceError(
            f"cannot set the bucket's policy ({_why(exc)})",
            fix="grant the key s3:PutLifecycleConfiguration and s3:PutEncryptionConfiguration",
        ) from None
    return PolicyResult(lifecycle, encryption)
