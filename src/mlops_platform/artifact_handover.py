"""Allowed downloads handed to the kit's nginx, which fetches them from the store itself.

Behind the kit's nginx the bytes of a download need not cross Python at all. nginx names
the object store it can reach (``X-Mlops-Artifact-Store``, set on the artifact routes
and the UI's three file routes only); when that is the very store this server signs for,
the download view (``artifact_stream``; ``artifact_send`` for the UI's routes) answers an
allowed download with an ``X-Accel-Redirect`` to nginx's
internal store location carrying a presigned GET of the object. nginx fetches it and
streams it to the client, ranges included; MLflow's permission check has run by then, as
for any download. Anything else (no header, another store, a client that addresses
buckets by host name) leaves the download to the server's own streaming.
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import urlsplit

STORE_HEADER = "x-mlops-artifact-store"
STORE_LOCATION = "/_mlops/artifact-store"
PRESIGN_SECONDS = 60  # nginx uses the URL at once; a range request asks again


def nginx_fetches(offered: str | None, endpoint: str | None) -> bool:
    """Whether the proxy in front fetches allowed downloads from this server's object
    store itself: it names the store and that is the endpoint this server signs for."""
    if not offered or not endpoint:
        return False
    return offered.rstrip("/") == endpoint.rstrip("/")


def nginx_can_fetch(repo: Any, client: Any, offered: str | None) -> bool:
    """Whether the proxy in front can fetch objects of REPO (read with CLIENT) itself: it
    names the store CLIENT signs for, and REPO expects no bucket owner (a check a
    presigned GET fetched by nginx would not carry)."""
    return not repo._bucket_owner_params and nginx_fetches(offered, client.meta.endpoint_url)


def store_location(presigned: str, endpoint: str) -> str:
    """nginx's internal location for PRESIGNED, a URL signed for ENDPOINT; ``""`` when
    nginx cannot use it: the URL names another host than the endpoint (a client that
    addresses buckets by host name), which nginx's store upstream would not answer for."""
    parts = urlsplit(presigned)
    if parts.netloc != urlsplit(endpoint).netloc:
        return ""
    return f"{STORE_LOCATION}{parts.path}?{parts.query}"


def nginx_target(client: Any, bucket: str, key: str) -> str | None:
    """The ``X-Accel-Redirect`` for one object: nginx's internal store location and a
    presigned GET of the object, MLflow's Content-Type and Content-Disposition asked of
    the store. None when there is no such object (a folder, or nothing); ``""`` when the
    URL is not one nginx can use: the server streams then."""
    from botocore.exceptions import ClientError
    from mlflow.server.artifact_router import _content_disposition
    from mlflow.utils.mime_type_utils import _guess_mime_type

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return None
    filename = posixpath.basename(key)
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentType": _guess_mime_type(filename),
            "ResponseContentDisposition": _content_disposition(filename),
        },
        ExpiresIn=PRESIGN_SECONDS,
    )
    return store_location(url, client.meta.endpoint_url)
