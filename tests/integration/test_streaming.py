"""Artifact downloads streamed through the proxy, with MLflow's permission check intact.

Behind the kit's nginx the bytes come from the object store through nginx (the server
hands an allowed download over with X-Accel-Redirect); the server streams them itself for
any other caller. Both are checked here.

A service account without READ on the experiment gets 403 on both download routes;
granted READ, it gets the bytes, a single range as 206, and MLflow's client downloads
the file. The object is bigger than one streamed chunk, so the body really comes in
pieces.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.integration.conftest import Platform
from tests.support.users import add_user

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


def _admin(platform: Platform) -> requests.Session:
    session = requests.Session()
    session.auth = platform.auth
    return session


def _ok(admin: requests.Session, base: str, path: str, body: dict[str, str]) -> dict[str, Any]:
    """POST BODY to MLflow's REST API PATH as the admin; the answer, which must be a 200."""
    response = admin.post(base + API + path, json=body, timeout=60)
    assert response.status_code == 200, (path, response.text)
    return dict(response.json())


def _service_account(platform: Platform, prefix: str) -> tuple[str, str, requests.Session]:
    """A new service account with no grant: (its name, its password, a session as it)."""
    name, password = add_user(platform, prefix)
    session = requests.Session()
    session.auth = (name, password)
    return name, password, session


def _as_nginx(platform: Platform) -> dict[str, str]:
    """What the kit's nginx adds to a request it passes to the server (the store's name
    aside)."""
    return {
        "Host": f"localhost:{platform.settings.server_port}",
        "X-Forwarded-User": platform.user,
        "X-Mlops-Proxy-Secret": platform.settings.proxy_secret.get_secret_value(),
    }


def _check_ranges(reader: requests.Session, urls: list[str], payload: bytes) -> None:
    """Range requests through both URLs: a middle slice, the tail, one past the end."""
    part = reader.get(urls[0], headers={"Range": "bytes=1048570-1048600"}, timeout=60)
    assert part.status_code == 206, part.status_code
    assert part.content == payload[1048570:1048601]
    assert part.headers["Content-Range"] == f"bytes 1048570-1048600/{len(payload)}"
    tail = reader.get(urls[1], headers={"Range": "bytes=-10"}, timeout=60)
    assert (tail.status_code, tail.content) == (206, payload[-10:])
    beyond = reader.get(urls[0], headers={"Range": f"bytes={len(payload) + 5}-"}, timeout=60)
    assert beyond.status_code == 416, beyond.status_code


def _download_with_mlflows_client(
    platform: Platform, svc: str, password: str, run_id: str, payload: bytes, tmp_path: Path
) -> None:
    """`mlflow.artifacts.download_artifacts` as ``svc``, in a process of its own, gets
    ``payload``."""
    import subprocess
    import sys

    env = {**platform.client_env, "MLFLOW_TRACKING_USERNAME": svc,
           "MLFLOW_TRACKING_PASSWORD": password}  # fmt: skip
    out = tmp_path / "dl"
    script = (
        "import mlflow, sys; print(mlflow.artifacts.download_artifacts("
        f"run_id={run_id!r}, artifact_path='model/weights.bin', dst_path={str(out)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip().splitlines()[-1]).read_bytes() == payload


def test_streamed_download_keeps_mlflows_permissions(platform: Platform, tmp_path: Path) -> None:
    admin, base = _admin(platform), platform.url

    def ok(path: str, body: dict[str, str]) -> dict[str, Any]:
        return _ok(admin, base, path, body)

    exp = ok("/experiments/create", {"name": f"stream-{uuid.uuid4().hex[:8]}"})["experiment_id"]
    run = ok("/runs/create", {"experiment_id": str(exp)})["run"]
    run_id = run["info"]["run_id"]
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    rel = f"{exp}/{run_id}/artifacts/model/weights.bin"
    put = admin.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{rel}", data=payload, timeout=60)
    assert put.status_code == 200, put.text

    svc, password, reader = _service_account(platform, "svc-stream")
    urls = [
        f"{base}/api/2.0/mlflow-artifacts/artifacts/{rel}",
        f"{base}/ajax-api/2.0/mlflow-artifacts/artifacts/{rel}",
    ]
    for url in urls:
        refused = reader.get(url, timeout=60)
        assert refused.status_code == 403, (url, refused.status_code, refused.text[:200])
        assert payload[:64] not in refused.content

    platform.cli("users", "grant", svc, "experiment", str(exp), "READ")
    for url in urls:
        got = reader.get(url, timeout=60, stream=True)
        assert got.status_code == 200, (url, got.text[:200])
        assert got.headers["Content-Length"] == str(len(payload))
        assert got.headers["Accept-Ranges"] == "bytes"
        assert "weights.bin" in got.headers["Content-Disposition"]
        body = b"".join(got.iter_content(256 * 1024))
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()

    _check_ranges(reader, urls, payload)
    # a missing object and a folder still get MLflow's own answers
    missing = reader.get(urls[0] + ".nope", timeout=60)
    assert missing.status_code >= 400
    # a granted READ on one experiment opens nothing else
    other = ok("/experiments/create", {"name": f"stream-other-{uuid.uuid4().hex[:8]}"})
    other_rel = f"{other['experiment_id']}/x/artifacts/a.bin"
    assert (
        admin.put(
            f"{base}/api/2.0/mlflow-artifacts/artifacts/{other_rel}", data=b"x", timeout=60
        ).status_code
        == 200
    )
    assert (
        reader.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{other_rel}", timeout=60).status_code
        == 403
    )

    # MLflow's own client, as the reader
    _download_with_mlflows_client(platform, svc, password, run_id, payload, tmp_path)


def _proxy_log_line(platform: Platform, offset: int, uri: str) -> dict[str, str]:
    """nginx's access-log entry for ``uri`` written after byte ``offset``."""
    log = platform.settings.state_dir / "nginx" / "logs" / "access.log"
    for _ in range(50):  # nginx writes the line as the response ends
        with open(log, "rb") as handle:
            handle.seek(offset)
            entries = [json.loads(line) for line in handle.read().splitlines() if line]
        found = [e for e in entries if e["uri"] == uri]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no access-log line for {uri}")


def _served_from_the_store(
    platform: Platform, admin: requests.Session, url: str, payload: bytes, name: str
) -> None:
    """A GET of URL through the proxy (a path on it) is nginx's from the store: the access
    log shows the second hop to the store, and the answer is MLflow's (the bytes, the
    type and attachment for NAME) with nothing of the hand-over in it."""
    from mlflow.server.handlers import _content_disposition_attachment
    from mlflow.utils.mime_type_utils import _guess_mime_type

    log = platform.settings.state_dir / "nginx" / "logs" / "access.log"
    offset = log.stat().st_size
    got = admin.get(platform.url + url, timeout=60)
    assert got.status_code == 200 and got.content == payload, (url, got.status_code)
    assert got.headers["Content-Type"].split(";")[0] == _guess_mime_type(name)
    assert got.headers["Content-Disposition"] == _content_disposition_attachment(name)
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    leaked = [h for h in got.headers if h.lower().startswith(("x-accel", "x-amz", "x-mlops"))]
    assert not leaked, leaked
    entry = _proxy_log_line(platform, offset, url)
    assert entry["upstream"].split(" : ")[1:] == [f"127.0.0.1:{platform.settings.s3_port}"]
    assert entry["upstream_status"] == "200 : 200", entry


def test_nginx_fetches_allowed_downloads_from_the_store_itself(platform: Platform) -> None:
    """Behind the kit's nginx an allowed download is served by nginx from the object store
    (a presigned GET handed back by the server): the access log shows the second hop to
    the store, the answer is MLflow's (bytes, type, disposition, ranges), nothing of the
    hand-over reaches the client, and the server still streams when no such nginx asks."""

    admin, base = _admin(platform), platform.url
    exp = admin.post(
        base + API + "/experiments/create", json={"name": f"xa-{uuid.uuid4().hex[:8]}"}
    ).json()["experiment_id"]
    run_id = admin.post(base + API + "/runs/create", json={"experiment_id": exp}).json()["run"][
        "info"
    ]["run_id"]
    name = "a b+c=d@(x) 重み.txt"
    payload = os.urandom(1536 * 1024 + 7)
    uri = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run_id}/artifacts/{quote(name)}"
    assert admin.put(base + uri, data=payload, timeout=60).status_code == 200
    log = platform.settings.state_dir / "nginx" / "logs" / "access.log"
    store = f"127.0.0.1:{platform.settings.s3_port}"

    _served_from_the_store(platform, admin, uri, payload, name)

    offset = log.stat().st_size
    part = admin.get(base + uri, headers={"Range": "bytes=100-199"}, timeout=60)
    assert (part.status_code, part.content) == (206, payload[100:200])
    assert _proxy_log_line(platform, offset, uri)["upstream_status"] == "200 : 206"

    # The store location is nginx's own: no client reaches it, logged in or not.
    bucket = platform.settings.s3_bucket
    assert admin.get(f"{base}/_mlops/artifact-store/{bucket}/x", timeout=10).status_code == 404
    # A client naming a store of its own changes nothing: nginx sets the header itself.
    forged = admin.get(base + uri, headers={"X-Mlops-Artifact-Store": "http://127.0.0.1:9"})
    assert forged.status_code == 200 and forged.content == payload

    # Straight to the server with what nginx adds: the hand-over when nginx names this
    # server's store; the bytes, streamed by the server, for any other caller.
    direct = f"http://127.0.0.1:{platform.settings.server_port}"
    headers = _as_nginx(platform)
    handed = requests.get(
        direct + uri, headers={**headers, "X-Mlops-Artifact-Store": f"http://{store}"}, timeout=60
    )
    assert handed.status_code == 200 and handed.content == b""
    assert handed.headers["X-Accel-Redirect"].startswith(f"/_mlops/artifact-store/{bucket}/")
    for other in ({}, {"X-Mlops-Artifact-Store": "http://127.0.0.1:9"}):
        streamed = requests.get(direct + uri, headers={**headers, **other}, timeout=60)
        assert streamed.status_code == 200 and streamed.content == payload
        assert "X-Accel-Redirect" not in streamed.headers


def test_the_uis_file_routes_hand_downloads_to_nginx(platform: Platform) -> None:
    """MLflow's three routes that send one file (a run's, as the UI previews and downloads
    it; a model version's; a logged model's) are answered by nginx from the store, not
    from a copy in the server's temporary folder: the access log shows the store's hop,
    and the answer is MLflow's (bytes, type, attachment, a range). Permissions still
    decide first; a folder, and a caller other than the kit's nginx, get MLflow's own."""

    admin, base = _admin(platform), platform.url

    def ok(path: str, body: dict[str, str]) -> dict[str, Any]:
        return _ok(admin, base, path, body)

    def put(artifact_uri: str, rel: str, payload: bytes) -> None:
        where = artifact_uri.removeprefix("mlflow-artifacts:")
        url = f"{base}/api/2.0/mlflow-artifacts/artifacts{where}/{quote(rel)}"
        assert admin.put(url, data=payload, timeout=60).status_code == 200

    exp = str(ok("/experiments/create", {"name": f"ui-dl-{uuid.uuid4().hex[:8]}"})["experiment_id"])
    run = ok("/runs/create", {"experiment_id": exp})["run"]["info"]
    name = "weights 重み.bin"
    payload = os.urandom(2 * 1024 * 1024 + 7)
    put(run["artifact_uri"], f"model/{name}", payload)
    model = ok("/logged-models", {"experiment_id": exp, "name": "m"})["model"]["info"]
    put(model["artifact_uri"], name, payload)
    registered = f"ui-dl-{uuid.uuid4().hex[:8]}"
    ok("/registered-models/create", {"name": registered})
    version = ok(
        "/model-versions/create",
        {"name": registered, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]},
    )["model_version"]["version"]
    urls = [
        f"/get-artifact?path={quote('model/' + name)}&run_uuid={run['run_id']}",
        f"/model-versions/get-artifact?path={quote(name)}&name={registered}&version={version}",
        f"/ajax-api/2.0/mlflow/logged-models/{model['model_id']}/artifacts/files"
        f"?artifact_file_path={quote(name)}",
    ]
    log = platform.settings.state_dir / "nginx" / "logs" / "access.log"
    store = f"127.0.0.1:{platform.settings.s3_port}"
    for url in urls:
        _served_from_the_store(platform, admin, url, payload, name)
        offset = log.stat().st_size
        part = admin.get(base + url, headers={"Range": "bytes=100-199"}, timeout=60)
        assert (part.status_code, part.content) == (206, payload[100:200])
        assert _proxy_log_line(platform, offset, url)["upstream_status"] == "200 : 206"

    # a HEAD: MLflow's own answer (the presigned URL is a GET's)
    head = admin.head(base + urls[0], timeout=60)
    assert head.status_code == 200, head.status_code
    assert head.headers["Content-Length"] == str(len(payload))
    # a folder: MLflow's own answer, as before
    folder = admin.get(f"{base}/get-artifact?path=model&run_uuid={run['run_id']}", timeout=60)
    assert folder.status_code == 400, folder.status_code

    # MLflow's permission check still comes first: no READ, no bytes; READ, the bytes
    svc, _password, reader = _service_account(platform, "svc-ui")
    refused = reader.get(base + urls[0], timeout=60)
    assert refused.status_code == 403 and payload[:64] not in refused.content
    platform.cli("users", "grant", svc, "experiment", exp, "READ")
    assert reader.get(base + urls[0], timeout=60).content == payload

    # Straight to the server: the hand-over only when nginx names this server's store
    direct = f"http://127.0.0.1:{platform.settings.server_port}"
    headers = _as_nginx(platform)
    handed = requests.get(
        direct + urls[0], headers={**headers, "X-Mlops-Artifact-Store": f"http://{store}"}
    )
    assert handed.status_code == 200 and handed.content == b""
    assert handed.headers["X-Accel-Redirect"].startswith("/_mlops/artifact-store/")
    for other in ({}, {"X-Mlops-Artifact-Store": "http://127.0.0.1:9"}):
        sent = requests.get(direct + urls[0], headers={**headers, **other}, timeout=60)
        assert sent.status_code == 200 and sent.content == payload
        assert "X-Accel-Redirect" not in sent.headers
