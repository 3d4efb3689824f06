"""A signed GET on the bucket (AWS Signature Version 4) with the standard library: the
exporter's bucket listing without boto3's ~40 MB."""

from __future__ import annotations

import datetime as dt

from mlops_platform.settings import PlatformSettings

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _sign(key: bytes, text: str) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_get(settings: PlatformSettings, params: dict[str, str], *, timeout: float = 10.0) -> bytes:
    """A signed GET on the bucket (ListObjectsV2 and the like) with the standard library:
    what boto3 would send, without boto3's ~40 MB. Static keys only (the backup key when
    set, like the backup's own listing)."""
    import hashlib
    import urllib.error
    import urllib.request
    from urllib.parse import quote, urlsplit

    key_id, secret = settings.s3_credentials("backup")
    region = settings.s3_region
    endpoint = settings.s3_endpoint or f"https://s3.{region}.amazonaws.com"
    parts = urlsplit(endpoint)
    bucket = settings.s3_bucket
    if settings.s3_path_style:
        host, path = parts.netloc, f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}"
    else:
        host, path = f"{bucket}.{parts.netloc}", parts.path.rstrip("/") or "/"
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    now = dt.datetime.now(dt.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "GET",
            path,
            query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _sign(f"AWS4{secret}".encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _sign(key, part)
    signature = _sign(key, to_sign).hex()
    request = urllib.request.Request(
        f"{parts.scheme}://{host}{path}?{query}",
        headers={
            "x-amz-content-sha256": payload,
            "x-amz-date": stamp,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()[:2000].decode(errors="replace")
        code = body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""
        raise RuntimeError(f"S3 GET {bucket} answered {exc.code} {code}".strip()) from None
